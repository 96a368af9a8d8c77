"""Tiny but real tokenizer + Llama checkpoints built in-process, for fast tests."""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

# SmolLM2-style ChatML template
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# always in the training data, so common words get merges whatever texts a test passes
GENERIC_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Please answer the question using the document below.",
    "The meeting was moved to Tuesday afternoon at three o'clock.",
    "She said that the report would be ready by the end of the week.",
    "You are a helpful assistant. Answer briefly and accurately.",
    "The company announced a new product in its annual report.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "He went to the store to buy bread, milk, and some eggs.",
    "The results of the study were published in a scientific journal.",
    "Our team will review the proposal and send feedback tomorrow.",
    "In 2024 the project had 12 members and a budget of 300000 dollars.",
    "This document describes how the system works and why it matters.",
    "They asked who was responsible for the decision and when it was made.",
    "The user asked a question and the assistant gave an answer.",
    "Memory, knowledge and facts change over time, so models must be updated.",
    "Summarize the following text in one sentence.",
    "It is important to check the data before training a model.",
    "The new policy takes effect on the first day of next month.",
    "Thank you for your help with this task; it was very useful.",
]


def build_tiny_tokenizer(texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on texts + GENERIC_SENTENCES, with ChatML specials."""
    tok = Tokenizer(models.BPE())
    # byte-level pre-tokenizer + decoder: any text round-trips exactly
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, so no <unk>
        show_progress=False,
    )
    tok.train_from_iterator([*texts, *GENERIC_SENTENCES], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
        extra_special_tokens=["<|im_start|>", "<|endoftext|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
        padding_side="right",
    )


def build_tiny_llama(out_dir: Path, texts: list[str], seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer Llama + tokenizer to out_dir; returns out_dir."""
    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer(texts)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir

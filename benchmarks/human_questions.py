"""What the memory knows, asked in questions nobody here wrote: MuSiQue's human single-hop sub-questions.

Each of the first N MuSiQue questions (../shared/data/musique) is decomposed by its authors into single-hop
sub-questions, each tied to one supporting passage; `#k` is replaced by the earlier hop's gold answer, and the
Wikidata-style items ("Hello Love >> performer") are phrased as plain questions ("What is the performer of Hello
Love?"). The supporting passages become documents; the pipeline's own stages run on them (reflections in the
default grounded form, then the memory trained from the base model on the reflections plus the generic replay, with
the early stop the training stage uses), and every way of answering is scored on the same questions in one run:

  base           the untrained model, closed book
  bm25_reader    the same model reading the BM25 top-k of the documents
  oracle_reader  the same model reading the question's own supporting passage
  <recipe>       the memory trained by that recipe, closed book (`before`: today's defaults; `after`: the new ones;
                 other recipes vary one setting of `after` for the comparison table)
  memory_with_passages  (--with-passages) the reader given the memory's answer beside the BM25 passages
  hybrid         (--with-passages) the hybrid route (protocol/hybrid.py): the memory's answer kept where a retrieved
                 passage supports it, else the reader's; verified_share, and verified_quote_has_gold (of the verified
                 answers, the share whose quoted sentence contains the gold answer); hybrid_read_both: the same route
                 whose reader is also shown the memory's answer (reading both instead of choosing between them);
                 hybrid_memory_query: the same route that checks an answer the question's passages do not support
                 against the passages retrieved for the question and the answer together (HybridConfig.memory_query);
                 hybrid_unverified_memory: the same route keeping the memory's answer, not the reader's, when neither
                 is supported (HybridConfig.unverified_answer)
  (--noise)      bm25_reader_noisy and hybrid_noisy: the same over an index with a duplicate of every passage and MuSiQue's
                 distractor paragraphs; noise_drop: each one's answer recall lost to the noise (the memory is not retrained
                 on the noisy corpus: benchmarks/reflections.py --noise measures that)
  best_of_memory_and_bm25  per question the better of the memory's and the BM25 reader's answer: what a perfect
                 chooser between them would get

Figures: f1 (token F1 against the gold answer or an alias, best of them), answer_recall (the share of the gold
answer's words the answer states), contains (the gold answer or an alias appears in the answer), idk (share declined);
per recipe also rows, steps, train_seconds, coverage_of_sentences (the share of the documents' sentences some
training row teaches, reflections/document.py).

    .venv/bin/python benchmarks/human_questions.py --quick --json benchmarks/results/human_questions_quick.json
    .venv/bin/python benchmarks/human_questions.py --json benchmarks/results/human_questions.json
    .venv/bin/python benchmarks/human_questions.py --questions 12 --recipes before,after,after_r64,after_full --json F
    .venv/bin/python benchmarks/human_questions.py --quick --epochs 12 --no-early-stop --json F   # enough passes?
    .venv/bin/python benchmarks/human_questions.py --questions 6 --recipes after --with-passages --memory-dir DIR --json F
        # the routes again on a memory a run trained before (the folder it printed), without training

Per recipe also train_fact_recall: the memory asked a sample of its own training facts, so a memory that learnt its
rows but does not answer people's questions shows apart from one that learnt nothing.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reflections import make_document  # noqa: E402

from memo_pipelines.llm.backends import LLMSpec, load_chat_model  # noqa: E402
from memo_pipelines.memory.training import TrainConfig  # noqa: E402
from memo_pipelines.protocol.hybrid import HybridConfig, HybridRoute  # noqa: E402
from memo_pipelines.protocol.passages import Passage, PassageIndex, reader_messages  # noqa: E402
from memo_pipelines.qa import STOPWORDS, ask_memory, is_idk, normalise, recalled, token_f1  # noqa: E402
from memo_pipelines.reflections.document import sentence_coverage  # noqa: E402
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections  # noqa: E402

MUSIQUE = ROOT.parent / "shared" / "data" / "musique" / "musique_train.json"
MEMORY_TOKENS = 48  # the memory answers in a sentence; a reader with a short answer

# a recipe: the synthesis settings, the training settings and the share of generic replay, named for the table
BEFORE = {"synthesis": {"document_phrasings": 0}, "train": {}}
AFTER = {"synthesis": {"document_phrasings": 2}, "train": {}}
RECIPES = {
    "before": BEFORE,
    "after": AFTER,
    "after_p1": {**AFTER, "synthesis": {"document_phrasings": 1}},
    "after_p3": {**AFTER, "synthesis": {"document_phrasings": 3}},
    "after_p5": {**AFTER, "synthesis": {"document_phrasings": 5}},
    "after_r64": {**AFTER, "train": {"lora_r": 64, "lora_alpha": 128}},
    "after_full": {**AFTER, "train": {"method": "full", "learning_rate": 3e-5}},
    "after_lr1e-3": {**AFTER, "train": {"learning_rate": 1e-3}},
    "after_e16": {**AFTER, "train": {"epochs": 16}},
}


def plain_question(question: str) -> str:
    """A Wikidata-style item ("Hello Love >> performer") as a plain question; other questions as they are."""
    if ">>" not in question:
        return question.strip()
    subject, relation = (part.strip() for part in question.split(">>", 1))
    return f"What is the {relation} of {subject}?"


def single_hop_questions(limit: int, first: int = 0) -> tuple[list[dict], list]:
    """MuSiQue's gold sub-questions of `limit` questions from the `first`, filled in, with their passages as documents."""
    items, documents = [], {}
    for item in json.loads(MUSIQUE.read_text())[first:first + limit]:
        answers = []
        hops = item["question_decomposition"]
        for position, hop in enumerate(hops):
            question = hop["question"]
            for index, answer in enumerate(answers, start=1):
                question = question.replace(f"#{index}", answer)
            answers.append(hop["answer"])
            paragraph = item["paragraphs"][hop["paragraph_support_idx"]]
            doc = make_document(paragraph["title"], paragraph["paragraph_text"])
            documents.setdefault(doc.doc_id, doc)
            golds = [hop["answer"]] + (item.get("answer_aliases", []) if position == len(hops) - 1 else [])
            items.append({"question": plain_question(question), "golds": golds, "doc_id": doc.doc_id})
    return items, list(documents.values())


def noisy_documents(documents: list, limit: int, distractors: int, first: int = 0) -> list:
    """The noise setting of benchmarks/reflections.py for retrieval: every passage, a duplicate of each, and up to
    `distractors` of MuSiQue's own non-supporting paragraphs per question (each question carries 20 paragraphs)."""
    noisy = {d.doc_id: d for d in documents}
    for d in documents:
        title, text = d.text.split("\n", 1)[0].lstrip("# "), d.text.split("\n\n", 1)[-1]
        copy = make_document(title, text, copy=1)
        noisy[copy.doc_id] = copy
    for item in json.loads(MUSIQUE.read_text())[first:first + limit]:
        for paragraph in [p for p in item["paragraphs"] if not p["is_supporting"]][:distractors]:
            doc = make_document(paragraph["title"], paragraph["paragraph_text"])
            noisy.setdefault(doc.doc_id, doc)
    return list(noisy.values())


def answer_recall(prediction: str, gold: str) -> float:
    words = [w for w in normalise(gold).split() if w not in STOPWORDS] or normalise(gold).split()
    stated = set(normalise(prediction).split())
    return sum(w in stated for w in words) / len(words) if words else 0.0


def per_question(answers: list[str], items: list[dict]) -> list[dict]:
    return [{"f1": max(token_f1(a, g) for g in it["golds"]), "answer_recall": max(answer_recall(a, g) for g in it["golds"]),
             "contains": float(any(recalled(a, g) for g in it["golds"])), "idk": float(is_idk(a))} for a, it in zip(answers, items)]


def mean(per: list[dict]) -> dict:
    n = max(1, len(per))
    return {k: round(sum(p[k] for p in per) / n, 4) for k in ("f1", "answer_recall", "contains", "idk")} | {"n": len(per)}


def score(answers: list[str], items: list[dict]) -> dict:
    return mean(per_question(answers, items))


def hybrid(reader, items: list[dict], index: PassageIndex, memory_answers: list[str], top_k: int, read_with_memory: bool,
           memory_query: bool = False, unverified_answer: str = HybridConfig.unverified_answer) -> dict:
    config = HybridConfig(top_k=top_k, read_with_memory=read_with_memory, memory_query=memory_query, unverified_answer=unverified_answer)
    answers = HybridRoute(reader, index, config).answer([it["question"] for it in items], memory_answers)
    verified = [(a, it) for a, it in zip(answers, items) if a.verified]
    quoted = sum(any(recalled(a.evidence.quote, g) for g in it["golds"]) for a, it in verified)
    routes = {route: sum(a.route == route for a in answers) for route in ("memory", "passages", "unverified", "declined")}
    return score([a.answer for a in answers], items) | {"verified_share": round(len(verified) / max(1, len(items)), 4),
                                                         "verified_quote_has_gold": round(quoted / len(verified), 4) if verified else None, "routes": routes}


READER_TOKENS = 24


def bm25_reader(reader, items: list[dict], index: PassageIndex, top_k: int) -> list[str]:
    return reader.chat([reader_messages(it["question"], index.top(it["question"], top_k)) for it in items], max_new_tokens=READER_TOKENS)


def oracle_reader(reader, items: list[dict], documents: dict) -> list[str]:
    conversations = [reader_messages(it["question"], [Passage(it["doc_id"], 0, len(documents[it["doc_id"]].text), documents[it["doc_id"]].text)])
                     for it in items]
    return reader.chat(conversations, max_new_tokens=READER_TOKENS)


def with_passages(reader, items: list[dict], index: PassageIndex, memory_answers: list[str], top_k: int) -> list[str]:
    """The reader over the BM25 passages with the memory's answer as one more passage (memory plus passages)."""
    conversations = [reader_messages(it["question"], [*index.top(it["question"], top_k), Passage("memory", 0, 0, f"A memory model answered: {answer}")])
                     for it, answer in zip(items, memory_answers)]
    return reader.chat(conversations, max_new_tokens=READER_TOKENS)


def gold_taught(rows: list[dict], items: list[dict]) -> float:
    """The share of the questions whose gold answer some training row's answer states, from the question's own passage:
    a bound on what the memory can have learned to say, measured without training."""
    answers: dict[str, list[str]] = {}
    for row in rows:
        if row.get("step") != "unanswerable":
            for doc_id in row["source_doc_ids"]:
                answers.setdefault(doc_id, []).append(row["answer"])
    taught = [any(recalled(a, g) for a in answers.get(it["doc_id"], []) for g in it["golds"]) for it in items]
    return round(sum(taught) / max(1, len(items)), 4)


def synthesise(recipe: dict, documents: list, base, items: list[dict]) -> tuple[list[dict], dict]:
    """The recipe's reflections through the pipeline's own synthesis, with the figures that need no training."""
    started = time.perf_counter()
    rows, stats = synthesise_reflections(documents, "v000001", base, "grounded", config=replace(SynthesisConfig(), **recipe["synthesis"]))
    return rows, {"rows": len(rows), "rows_by_step": stats.to_json()["kept_by_step"], "synthesis_seconds": round(time.perf_counter() - started, 1),
                  "coverage_of_sentences": sentence_coverage(documents, rows)["share"], "gold_taught": gold_taught(rows, items)}


def train_recipe(name: str, recipe: dict, documents: list, base, base_dir: Path, general: list[dict], items: list[dict], max_steps: int,
                 epochs: int, early_stop: bool = True) -> tuple[dict, Path]:
    """Reflections and a memory by the recipe, through the pipeline's own synthesis, update plan rows and trainer."""
    from memo_pipelines.memory.merging import fold_adapter
    from memo_pipelines.memory.training import train_adapter
    from memo_pipelines.memory.strategies import UpdateConfig, general_rows, stop_rows

    rows, synthesis_figures = synthesise(recipe, documents, base, items)
    synthesis_seconds = synthesis_figures["synthesis_seconds"]
    update = UpdateConfig()
    examples = rows + general_rows(general, len(rows), update.general_mix, 0)
    config = replace(TrainConfig(), **recipe["train"], **({"max_steps": max_steps} if max_steps else {}), **({"epochs": epochs} if epochs else {}),
                     **({"stop_every": 0} if not early_stop else {}))
    scratch = Path(tempfile.mkdtemp(prefix=f"human-{name}-"))
    started = time.perf_counter()
    def progress(step: dict) -> None:
        if "step" in step and step["step"] % 20 == 0:
            print(f"  {name}: step {step['step']}/{step['total_steps']} loss {step['loss']:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)

    print(f"{name}: {len(rows)} reflections in {synthesis_seconds:.0f} s, {len(examples)} examples with the generic replay", flush=True)
    figures = train_adapter(base_dir, [{"question": r["question"], "answer": r["answer"]} for r in examples], scratch / "adapter", config,
                            progress, stop_rows=stop_rows(rows, update.stop_sample, 0))
    model_dir = scratch / "adapter" if config.method == "full" else fold_adapter(base_dir, scratch / "adapter", scratch / "model")
    train_seconds = time.perf_counter() - started
    # what the memory says to its own training questions (a sample): did it learn its rows, apart from people's questions?
    from memo_pipelines.llm.backends import LocalChatModel

    trained = [r for r in stop_rows(rows, 32, 1) if not is_idk(r["key_answer"])]
    said = ask_memory(LocalChatModel(model_dir), [r["question"] for r in trained], MEMORY_TOKENS)
    synthesis_figures["train_fact_recall"] = round(sum(recalled(a, r["key_answer"]) for a, r in zip(said, trained)) / max(1, len(trained)), 3)
    return synthesis_figures | {"examples": len(examples), "steps": figures["steps"], "planned_steps": figures["planned_steps"],
                                "kept_step": figures["kept_step"], "stopped_early": figures["stopped_early"], "train_seconds": round(train_seconds, 1),
                                "recipe": {"synthesis": recipe["synthesis"],
                                           "train": {k: v for k, v in asdict(config).items() if k in recipe["train"] or k in ("max_steps", "epochs", "stop_every")}}}, model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100, help="MuSiQue questions whose sub-questions are asked (100: all, about 237)")
    parser.add_argument("--first", type=int, default=0,
                        help="index of the first MuSiQue question taken (questions a setting was not chosen on: a held-out set)")
    parser.add_argument("--recipes", default="before,after", help=f"comma-separated, of {sorted(RECIPES)}")
    parser.add_argument("--top-k", type=int, default=3, help="passages the BM25 reader sees")
    parser.add_argument("--with-passages", action="store_true", help="also the reader given the memory's answer beside the passages")
    parser.add_argument("--max-steps", type=int, default=0, help="> 0: cap every recipe's training at this many steps (a time budget)")
    parser.add_argument("--epochs", type=int, default=0, help="> 0: every recipe's most passes over its rows (the trainer's default otherwise)")
    parser.add_argument("--no-early-stop", action="store_true", help="train every planned pass (--epochs) instead of stopping on the training facts' recall")
    parser.add_argument("--no-train", action="store_true",
                        help="the figures that need no training only (rows, coverage_of_sentences, gold_taught per recipe), and the readers")
    parser.add_argument("--no-readers", action="store_true", help="skip the base model and the readers (with --no-train: synthesis figures only)")
    parser.add_argument("--memory-dir", type=Path,
                        help="a memory trained before (a folded model folder, as a run leaves it): score the routes on it instead of training "
                             "(one recipe name, used as the arm's name)")
    parser.add_argument("--noise", action="store_true",
                        help="with --with-passages: also the BM25 reader and the hybrid route over a noisy index (a duplicate of every passage "
                             "and MuSiQue's distractor paragraphs); the memory is the one trained on the clean passages")
    parser.add_argument("--distractors", type=int, default=4, help="--noise: distractor paragraphs per MuSiQue question")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 MuSiQue questions (about 7 sub-questions), 40 steps a recipe: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.questions, args.max_steps = 3, args.max_steps or 40

    import torch

    torch.set_num_threads(args.threads)
    from memo_pipelines.apps.settings import Settings
    from memo_pipelines.evaluation.general import general_replay_questions
    from memo_pipelines.evaluation.metrics import base_answers
    from memo_pipelines.llm.backends import LocalChatModel
    from memo_pipelines.llm.embedded import embedded_model_dir

    base_dir = embedded_model_dir(Settings.from_env().work_dir / "embedded")
    base = load_chat_model(LLMSpec("local", ""), base_dir)
    items, documents = single_hop_questions(args.questions, args.first)
    by_id = {d.doc_id: d for d in documents}
    index = PassageIndex.of_documents({d.doc_id: d.text for d in documents})
    print(f"{len(items)} human-written single-hop questions over {len(documents)} passages (MuSiQue questions {args.first + 1} to {args.first + args.questions})", flush=True)
    sizes = {"sub_questions": len(items), "passages": len(documents)}
    questions = [it["question"] for it in items]

    results, started = {}, time.perf_counter()
    if not args.no_readers:
        results["base"] = score(ask_memory(base, questions, MEMORY_TOKENS), items)
        bm25_answers = bm25_reader(base, items, index, args.top_k)
        results["bm25_reader"] = score(bm25_answers, items)
        results["oracle_reader"] = score(oracle_reader(base, items, by_id), items)
        print(f"readers and base model: {time.perf_counter() - started:.0f} s: " + json.dumps({k: results[k] for k in ("base", "bm25_reader", "oracle_reader")}), flush=True)
        write_json(args, results, {}, {}, base, sizes)  # a long run's figures so far, should it be stopped
    if args.no_train:
        for name in args.recipes.split(","):
            results[name] = synthesise(RECIPES[name], documents, base, items)[1]
            print(f"{name}: {results[name]}", flush=True)
        write_json(args, results, {}, {}, base, sizes)
        return
    general = base_answers(base, general_replay_questions()[: 30 if args.quick else None])

    examples = {}
    for name in args.recipes.split(","):
        if args.memory_dir:
            figures, model_dir = {"memory_dir": str(args.memory_dir)}, args.memory_dir
        else:
            figures, model_dir = train_recipe(name, RECIPES[name], documents, base, base_dir, general, items, args.max_steps, args.epochs,
                                              not args.no_early_stop)
            print(f"  {name}: the trained memory stays in {model_dir} (--memory-dir to score it again)", flush=True)
        memory = LocalChatModel(model_dir)
        answers = ask_memory(memory, questions, MEMORY_TOKENS)
        results[name] = score(answers, items) | figures
        examples[name] = [[q, it["golds"][0], a] for q, it, a in zip(questions, items, answers)]
        if args.with_passages and name == args.recipes.split(",")[-1]:
            results["memory_with_passages"] = score(with_passages(base, items, index, answers, args.top_k), items) | {"memory": name}
            results["hybrid"] = hybrid(base, items, index, answers, args.top_k, read_with_memory=False) | {"memory": name}
            results["hybrid_read_both"] = hybrid(base, items, index, answers, args.top_k, read_with_memory=True) | {"memory": name}
            results["hybrid_memory_query"] = hybrid(base, items, index, answers, args.top_k, read_with_memory=False, memory_query=True) | {"memory": name}
            results["hybrid_unverified_memory"] = hybrid(base, items, index, answers, args.top_k, read_with_memory=False,
                                                         unverified_answer="memory") | {"memory": name}
            best = [max(m, r, key=lambda x: x["answer_recall"]) for m, r in zip(per_question(answers, items), per_question(bm25_answers, items))]
            results["best_of_memory_and_bm25"] = mean(best) | {"memory": name}
            if args.noise:
                noisy = noisy_documents(documents, args.questions, args.distractors, args.first)
                noisy_index = PassageIndex.of_documents({d.doc_id: d.text for d in noisy})
                results["bm25_reader_noisy"] = score(bm25_reader(base, items, noisy_index, args.top_k), items) | {"passages": len(noisy)}
                results["hybrid_noisy"] = hybrid(base, items, noisy_index, answers, args.top_k, read_with_memory=False) | {"memory": name}
                results["noise_drop"] = {"bm25_reader": round(results["bm25_reader"]["answer_recall"] - results["bm25_reader_noisy"]["answer_recall"], 4),
                                         "hybrid": round(results["hybrid"]["answer_recall"] - results["hybrid_noisy"]["answer_recall"], 4),
                                         "documents": len(noisy), "clean_documents": len(documents)}
        print(f"{name}: answer recall {results[name]['answer_recall']}, F1 {results[name]['f1']}, contains {results[name]['contains']}, "
              f"idk {results[name]['idk']}; {figures.get('rows')} rows, {figures.get('steps')} steps in {figures.get('train_seconds')} s, "
              f"coverage {figures.get('coverage_of_sentences')}, its own training facts recalled {figures.get('train_fact_recall')}", flush=True)
        write_json(args, results, {}, examples, base, sizes)
        del memory

    print(f"\n{'arm':22} {'answer_recall':>13} {'f1':>7} {'contains':>9} {'idk':>6} {'rows':>6} {'steps':>6} {'train_s':>8} {'coverage':>9} {'gold_taught':>6}")
    for name, r in results.items():
        if "answer_recall" not in r:
            print(f"{name:22} {r}")
            continue
        print(f"{name:22} {r['answer_recall']:>13} {r['f1']:>7} {r['contains']:>9} {r['idk']:>6} {r.get('rows', ''):>6} {r.get('steps', ''):>6} "
              f"{r.get('train_seconds', ''):>8} {r.get('coverage_of_sentences', ''):>9} {r.get('gold_taught', ''):>6}")
    ratios = {}
    if "before" in results:
        for name in results:
            if name not in ("before", "base", "bm25_reader", "oracle_reader", "noise_drop") and results["before"]["answer_recall"] and "rows" in results[name]:
                ratios[f"{name}_vs_before"] = round(results[name]["answer_recall"] / results["before"]["answer_recall"], 2)
    for name in results:
        if name not in ("base", "bm25_reader", "oracle_reader", "noise_drop") and results.get("bm25_reader", {}).get("answer_recall"):
            ratios[f"{name}_vs_bm25_reader"] = round(results[name]["answer_recall"] / results["bm25_reader"]["answer_recall"], 2)
    print("answer recall ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    write_json(args, results, ratios, examples, base, sizes)


def write_json(args, results: dict, ratios: dict, examples: dict, base, sizes: dict | None = None) -> None:
    if not args.json:
        return
    import torch
    import transformers

    memory_arm = "after" if "after" in results else args.recipes.split(",")[-1]
    if memory_arm not in results:  # written before any memory was trained
        memory_arm = None
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": " ".join(["benchmarks/human_questions.py", *sys.argv[1:]]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | (sizes or {}),
        **results, **({"memory": results[memory_arm] | {"recipe_name": memory_arm},
                       "coverage_of_sentences": results[memory_arm].get("coverage_of_sentences"),
                       "train_seconds": results[memory_arm].get("train_seconds")} if memory_arm else {}),
        "ratios": ratios, "examples": examples,
        "models": {"memory_base": base.name},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }, indent=2))


if __name__ == "__main__":
    main()

"""Source attribution's cost as the history grows: milliseconds to attribute one memory answer with the inverted index
(`SourceIndex`, rows looked up by their key answer's first word) beside a scan of every row (the index before), on
the same rows and answers in one run.

Rows: MuSiQue's single-hop sub-questions (`#k` filled in) and NQ-open's questions with their first answer, one
document each: about 2,000 public QA pairs the project did not write. A history of N rows repeats them as if every
fact had been learned again by later versions (each copy cites its own document): the worst case for the index, whose
lookups then grow with the copies too. Answers: each asked row's key answer inside a sentence.

    .venv/bin/python benchmarks/source_index.py [--sizes 2000,10000,50000] [--answers 50] [--quick] [--json FILE]
"""

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from human_questions import single_hop_questions  # noqa: E402

from memo_pipelines.protocol.sources import SourceIndex  # noqa: E402

NQ = ROOT.parent / "shared" / "data" / "nq_open" / "nq_open_test.jsonl"


class ScanIndex(SourceIndex):
    """Every row is a candidate: what attribution did before the index."""

    def candidates(self, memory_answer: str) -> list[dict]:
        return self.reflections


def public_rows() -> list[dict]:
    items, _ = single_hop_questions(100)
    pairs = [(i["question"], i["golds"][0]) for i in items]
    pairs += [(q["question"], q["answer"][0]) for q in map(json.loads, NQ.read_text().splitlines()) if q.get("answer")]
    return [{"id": f"row-{n}", "question": q, "answer": f"{a}.", "key_answer": a, "step": "fact_extraction", "source_doc_ids": [f"doc-{n}.txt"]}
            for n, (q, a) in enumerate(pairs)]


def history(rows: list[dict], size: int) -> list[dict]:
    return [{**rows[n % len(rows)], "id": f"v{n // len(rows)}-{rows[n % len(rows)]['id']}", "source_doc_ids": [f"v{n // len(rows)}-doc-{n % len(rows)}.txt"]}
            for n in range(size)]


def per_answer_ms(index: SourceIndex, asked: list[dict]) -> tuple[float, list]:
    started = time.perf_counter()
    cited = [index.attribute(r["question"], f"As far as I know, it is {r['key_answer']}.") for r in asked]
    return round((time.perf_counter() - started) * 1000 / len(asked), 3), [sorted(c["id"] for c in rows) for rows in cited]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000,50000", help="rows in the history, comma-separated")
    parser.add_argument("--answers", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="sizes 2000,10000 and 20 answers")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [2000, 10000] if args.quick else [int(s) for s in args.sizes.split(",")]
    answers = 20 if args.quick else args.answers
    rows = public_rows()
    asked = random.Random(0).sample(rows, answers)
    results = []
    print(f"{len(rows)} public rows; {answers} answers attributed at each size")
    print(f"{'rows':>8} {'build s':>8} {'index ms/answer':>16} {'scan ms/answer':>15} {'scan/index':>10}  same sources")
    for size in sizes:
        grown = history(rows, size)
        started = time.perf_counter()
        index = SourceIndex(grown)
        build = round(time.perf_counter() - started, 3)
        indexed, cited = per_answer_ms(index, asked)
        scanned, scan_cited = per_answer_ms(ScanIndex(grown), asked)
        result = {"rows": size, "build_seconds": build, "index_ms_per_answer": indexed, "scan_ms_per_answer": scanned,
                  "scan_over_index": round(scanned / indexed, 1), "same_sources": cited == scan_cited}
        results.append(result)
        print(f"{size:>8} {build:>8} {indexed:>16} {scanned:>15} {result['scan_over_index']:>10}  {result['same_sources']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "source_index", "public_rows": len(rows), "answers": answers,
                                         "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()

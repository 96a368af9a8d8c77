"""Time to knowledge: from upload to a promoted (or rejected) model for a new version of a few long documents.

Needs the running stack of `make demo` (it uploads to the demo's bucket and the landing sensor makes the next version).
Writes `--documents` documents of about `--chars` characters each from HotpotQA passages (`../shared/data`), a seeded
sample of questions whose supporting and distractor passages are concatenated per document in the order they are
sampled, uploads them with `memo upload`, watches the bucket for the version's stage outputs and prints the seconds from
upload to the outcome, the second each stage's output appeared, and the version's report card (`memo status --json`).

    eval "$(.venv/bin/memo env)"; .venv/bin/python benchmarks/time_to_knowledge.py --json benchmarks/results/time_to_knowledge.json
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hotpotqa" / "hotpotqa_train.json"
sys.path.insert(0, str(ROOT))
MEMO = [sys.executable, "-m", "memo_pipelines.apps.cli"]


def documents(count: int, chars: int, seed: int) -> list[str]:
    """`count` texts of at least `chars` characters, each made of whole HotpotQA passages, none shared between texts."""
    questions = json.loads(DATA.read_text())
    random.Random(seed).shuffle(questions)
    texts, seen, current = [], set(), []
    for question in questions:
        for title, sentences in question["context"]:
            if title in seen:
                continue
            seen.add(title)
            current.append(f"{title}\n\n{''.join(sentences).strip()}\n")
            if sum(map(len, current)) >= chars:
                texts.append("\n".join(current))
                current = []
                if len(texts) == count:
                    return texts
    raise SystemExit(f"HotpotQA has too few passages for {count} documents of {chars} characters")


def status() -> dict:
    return json.loads(subprocess.run(MEMO + ["status", "--json"], check=True, capture_output=True, text=True, cwd=ROOT).stdout)


def watch(known_versions: int, started: float, timeout: float) -> tuple[dict[str, float], str]:
    """Seconds after `started` at which each stage output of the next version appeared, and its outcome ("promoted",
    "rejected", or "timed out"); returns once the outcome is known or at the timeout."""
    from memo_pipelines.apps.settings import Settings
    from memo_pipelines.apps.status import version_outcome, version_stages

    settings = Settings.from_env()
    store, registry = settings.store(), settings.registry()
    seen: dict[str, float] = {}
    while time.time() - started < timeout:
        states = version_stages(store)
        if len(states) > known_versions:
            version = sorted(states)[known_versions]
            for stage in states[version]:
                seen.setdefault(stage, round(time.time() - started, 1))
            outcome = version_outcome(store, registry, version) if "evaluation.json" in seen else None
            if outcome is not None:
                seen["outcome"] = round(time.time() - started, 1)
                return seen, outcome[0]
        time.sleep(2)
    return seen, "timed out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=3)
    parser.add_argument("--chars", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    before = status()["versions"]
    texts = documents(args.documents, args.chars, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        stamp = time.strftime("%Y%m%d%H%M%S")
        for i, text in enumerate(texts, 1):
            (Path(folder) / f"hotpotqa_{stamp}_{i}.txt").write_text(text)
        started = time.time()
        subprocess.run(MEMO + ["upload", folder], check=True, cwd=ROOT)
        stage_seconds, outcome = watch(len(before), started, args.timeout)
        seconds = round(time.time() - started, 1)
    after = status()["versions"]
    version = after[-1] if len(after) > len(before) else None
    result = {
        "documents": len(texts),
        "characters": [len(t) for t in texts],
        "seconds_upload_to_outcome": seconds,
        "seconds_by_stage_output": stage_seconds,
        "outcome": outcome,
        "version": version and version["version"],
        "figures": version and version.get("figures"),
        "failed_gates": version and version.get("failed_gates"),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Where an evaluation's minutes go: the parts of memory_eval timed one by one on a memory model.

People's questions (the sample evaluation set) closed book and through the protocol with the embedded executive
(`--mode single`, the evaluation's mode), and the general-ability questions (candidate answers and gold log-likelihood).
The protocol is timed on `--protocol-questions` of them and scaled to the whole set.

    .venv/bin/python benchmarks/evaluation_time.py --memory "$MEMO_HOME/work/models/<promoted model id>" \
        --json benchmarks/results/evaluation_time.json
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memo_pipelines.apps.settings import Settings  # noqa: E402
from memo_pipelines.evaluation.general import general_figures, general_questions  # noqa: E402
from memo_pipelines.llm.backends import LocalChatModel  # noqa: E402
from memo_pipelines.llm.embedded import embedded_model_dir  # noqa: E402
from memo_pipelines.protocol import Protocol, ProtocolConfig  # noqa: E402
from memo_pipelines.qa import ask_memory  # noqa: E402

PEOPLE = ROOT / "memo_pipelines" / "sample_evals" / "staff_questions.jsonl"


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", type=Path, required=True, help="a memory model directory (the demo's promoted model)")
    parser.add_argument("--protocol-questions", type=int, default=5, help="people's questions asked through the protocol")
    parser.add_argument("--general-size", type=int, default=100, help="general questions, as Gates.general_size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    memory = LocalChatModel(args.memory)
    executive = LocalChatModel(embedded_model_dir(Settings.from_env().work_dir / "embedded"))
    people = [json.loads(line) for line in PEOPLE.read_text().splitlines() if line.strip()]
    engine = Protocol(executive, memory, ProtocolConfig(mode="single"))
    sample = people[: args.protocol_questions]
    protocol_seconds = timed(lambda: [engine.ask(row["question"]) for row in sample])
    figures = {
        "people_questions": len(people),
        "closed_book_seconds": timed(lambda: ask_memory(memory, [row["question"] for row in people])),
        "general_seconds": timed(lambda: general_figures(memory, general_questions(args.general_size))),
        "protocol_seconds_a_question": round(protocol_seconds / len(sample), 1),
    }
    figures["protocol_seconds_whole_set"] = round(figures["protocol_seconds_a_question"] * len(people))
    figures["protocol_vs_closed_book"] = round(figures["protocol_seconds_whole_set"] / max(figures["closed_book_seconds"], 0.1), 1)
    print(json.dumps(figures, indent=1))
    if args.json:
        command = "benchmarks/evaluation_time.py " + " ".join(a if not a.startswith("/") else "MEMORY_DIR" for a in sys.argv[1:])
        args.json.write_text(json.dumps({"command": command, "figures": figures, "machine": {"cpus": torch.get_num_threads(),
                                         "python": platform.python_version(), "torch": torch.__version__}}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The LLM form on a document longer than one prompt's window (issue 28, item 5): a fact stated after the first 3,000
characters is judged against the text that states it, and probed, instead of being judged against the document's
opening and dropped as unsupported. A scripted OpenAI-compatible server stands in for the remote generator; it judges
faithfully, keeping a pair only when the text it is shown states the pair's names."""

import json
import re

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.llm.backends import LLMSpec, OpenAIChatModel
from memo_pipelines.reflections.probes import write_probes
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from tests.openai_stub import ScriptedOpenAI

OPENING = "\n\n".join(f"The Kesby plant runs line {i} of cell assembly, which the line {i} crew inspects every morning before the first shift."
                      for i in range(1, 41))
LATE_FACT = "The Lorne plant was opened by Tomasz Reyes in 2019."
LONG = Document("plants.txt", "landing/plants.txt", "etag", 0, "sha-plants", f"{OPENING}\n\n{LATE_FACT}")
LATE_PAIR = {"question": "Who opened the Lorne plant?", "answer": LATE_FACT, "key": "Tomasz Reyes", "kind": "direct"}
LATE_PROBE = {"kind": "fact", "question": "Which person opened the plant at Lorne in 2019?", "key": "Tomasz Reyes"}


def shown_text(prompt: str) -> str:
    return prompt.split("<document id=", 1)[1]


def faithful_llm(request: dict) -> str:
    """Extracts the late fact from the chunk that holds it, keeps a pair only when every name of its answer is in the
    text it is shown, and writes a probe of the late fact when shown it."""
    prompt = request["messages"][0]["content"]
    first = prompt.split("\n", 1)[0]
    if "turn a document" in first:
        return json.dumps([LATE_PAIR] if "Tomasz Reyes" in shown_text(prompt) else [])
    if "check question" in first:
        verdicts = []
        for line in prompt.split("Pairs:\n", 1)[1].split("\n\n", 1)[0].splitlines():
            index, answer = int(line.split(".", 1)[0]), line.split(" A: ", 1)[1]
            names = re.findall(r"[A-Z][a-z]+(?: [A-Z][a-z]+)*", answer)
            stated = all(name in shown_text(prompt) for name in names)
            verdicts.append({"id": index, "verdict": "keep" if stated else "drop"})
        return json.dumps(verdicts)
    if "test questions" in first:
        return json.dumps([LATE_PROBE] if "Tomasz Reyes" in shown_text(prompt) else [])
    return "[]"


def generator(server: ScriptedOpenAI) -> OpenAIChatModel:
    return OpenAIChatModel(LLMSpec(backend="openai", model="scripted-model", base_url=server.base_url, max_retries=0))


def test_the_judge_sees_the_chunk_a_late_pair_came_from_and_keeps_it():
    assert LONG.text.index(LATE_FACT) > 3000
    config = SynthesisConfig(steps=("fact_extraction", "verification"), entity_summaries=False, fabricated_negatives_per_document=0)
    with ScriptedOpenAI(faithful_llm) as server:
        rows, stats = synthesise_reflections([LONG], "v000001", generator(server), "llm_json", config=config)
        judged = [r["messages"][0]["content"] for r in server.requests if "check question" in r["messages"][0]["content"].split("\n", 1)[0]]
    kept = {r["question"]: r for r in rows if r["step"] == "fact_extraction"}
    assert "Who opened the Lorne plant?" in kept and kept["Who opened the Lorne plant?"]["verified"], dict(stats.dropped)
    assert stats.dropped["judged unsupported by the document"] == 0
    # the judge read the pair's own chunk, bounded like every chunk, not the whole document
    assert judged and all(len(shown_text(p)) <= 2 * config.chunk_chars + 100 for p in judged)


def test_probes_of_a_long_document_ask_about_its_late_facts():
    with ScriptedOpenAI(faithful_llm) as server:
        probes, report = write_probes([LONG], [], [], "v000001", generator(server), "llm_json")
        shown = [shown_text(r["messages"][0]["content"]) for r in server.requests]
    assert [p["question"] for p in probes if p["kind"] == "fact"] == [LATE_PROBE["question"]], report
    assert all(len(text) <= 3000 + 100 for text in shown)  # each prompt holds one window of the document

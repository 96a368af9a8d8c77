"""Stale negatives: a fabricated "I don't know" row about a name its version never saw leaves replay (and every
other use of the live rows) once a later version's document names that entity. On a real S3 server, with the
grounded synthesis writing the rows."""

from memo_pipelines.corpus.landing import Cursor, diff_landing, load_cursor, manifest
from memo_pipelines.corpus.reading import snapshot_corpus
from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.qa import IDK
from memo_pipelines.memory.strategies import STRATEGIES, UpdateConfig, per_version_replay
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from memo_pipelines.storage import layout
from memo_pipelines.storage.history import live_reflections
from memo_pipelines.storage.registry import ModelRegistry
from memo_pipelines.storage.workspace import Workspace
from tests.test_reflections import ScriptedOpenAI, generator

PLANTS = ("The Kesby plant employs 340 people. The manager of the Kesby plant is Rafael Ondo.\n"
          "The Lorne plant employs 120 people. The manager of the Lorne plant is Ines Halloran.\n"
          "The Kesby plant opened in 1987. The Lorne plant opened in 1994.")


def land_version(ws: Workspace, version: str, documents: dict[str, str], seen: dict[str, str]):
    for name, text in documents.items():
        ws.store.put_bytes(f"{layout.LANDING_PREFIX}{name}", text.encode())
    diff = diff_landing(list(ws.store.list_objects(layout.LANDING_PREFIX)), Cursor(etags=seen))
    ws.store.put_json(layout.version_key(version, "manifest.json"), manifest(version, diff))
    return snapshot_corpus(ws, version, max_bytes=100_000), diff.seen


def test_a_fabricated_negative_is_retired_once_a_later_document_names_its_entity(store, tmp_path):
    ws = Workspace(store, ModelRegistry(store, tmp_path / "models"), tmp_path / "work")
    first, seen = land_version(ws, "v000001", {"plants.txt": PLANTS}, load_cursor(store, None).etags)
    with ScriptedOpenAI(lambda request: "") as server:
        rows, _ = synthesise_reflections(first.documents, "v000001", generator(server), "grounded",
                                         config=SynthesisConfig(fabricated_negatives_per_document=4))
    store.put_jsonl(layout.version_key("v000001", "reflections.jsonl"), rows)
    negatives = [r for r in rows if r["method"] == "fabricated_entity"]
    assert len({r["entity"] for r in negatives}) >= 2
    invented = negatives[0]["entity"]
    stale = [r for r in negatives if r["entity"] == invented]

    # version 2 brings a document about the entity version 1 invented
    land_version(ws, "v000002", {"news.txt": f"The {invented} opened in 2021. It employs 90 people."}, seen)
    live, retired = live_reflections(store, "v000002")
    assert not [r for r in live["v000001"] if r["id"] in {s["id"] for s in stale}]
    assert [r for r in live["v000001"] if r["method"] == "fabricated_entity"] == [r for r in negatives if r not in stale]
    assert retired["stale_negatives"] == len(stale)

    # neither replayed (the targeted half prefers rows like the new version's) nor trained again as pending
    replay = per_version_replay(live, ["v000001"], UpdateConfig(replay_size=1000), 0, "v000002",
                                new=[{"question": f"When did the {invented} open?"}])
    plan = STRATEGIES["continue"].plan(ws, "v000002", "base", UpdateConfig(), [], 0)
    trained = [e["question"] for job in plan.jobs for e in job.examples] + [r["question"] for r in replay["v000001"]]
    assert not {s["question"] for s in stale} & set(trained)


def test_no_i_dont_know_row_asks_what_the_document_says_through_a_pronoun():
    # the founding year is stated in a sentence that names the journal only as "It": a template negative asking when it
    # was founded would teach the memory to decline a question its document answers
    text = ("# Journal of Psychotherapy Integration\n\nThe Journal of Psychotherapy Integration is a peer-reviewed academic "
            "journal published by the American Psychological Association. It was established in 1991 and covers research in "
            "psychotherapy.")
    document = Document("journal.md", "landing/journal.md", "etag", len(text), "sha", text, "md")
    with ScriptedOpenAI(lambda request: "") as server:
        rows, _ = synthesise_reflections([document], "v000001", generator(server), "grounded", config=SynthesisConfig())
    declined = [r["question"] for r in rows if r["answer"] == IDK and "Journal of Psychotherapy Integration" in r["question"]]
    assert not [q for q in declined if "founded" in q or "established" in q], declined

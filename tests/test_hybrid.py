"""The hybrid route (protocol/hybrid.py): a memory answer a retrieved passage supports is kept and quoted with its
document id and character span; one no passage supports goes to the reader (a scripted OpenAI-compatible endpoint
standing in for a remote LLM), and what no passage supports is marked unverified or declined by the setting."""

import os

import pytest

from memo_pipelines.corpus.landing import Cursor, diff_landing, manifest
from memo_pipelines.corpus.reading import snapshot_corpus
from memo_pipelines.llm.backends import LLMSpec, load_chat_model
from memo_pipelines.protocol.hybrid import HybridConfig, HybridRoute
from memo_pipelines.protocol.passages import PassageIndex, chunk_document, live_passages, write_version_passages
from memo_pipelines.qa import IDK
from memo_pipelines.storage import layout
from memo_pipelines.storage.registry import ModelRegistry
from memo_pipelines.storage.workspace import Workspace
from tests.conftest import CREDENTIALS
from tests.openai_stub import ScriptedOpenAI
from tests.test_serve import QUESTION, client, executive, memory, start_serve, stop, wait_for

DOCUMENTS = {
    "plant_kesby.txt": "The Kesby plant is the factory of Quillfeather Labs in the town of Kesby. The Kesby plant opened in 2019 "
                       "beside the river Olm. The manager of the Kesby plant is Rafael Ondo.",
    "product_tern.md": "# Tern battery cell\n\nTern is the sodium-ion battery cell made by Quillfeather Labs. "
                       "In 2022 the Tern cell won the Corvel Prize for energy storage.",
    "policy_travel.txt": "Employees of Quillfeather Labs must travel by train for trips shorter than 500 kilometres.",
}


def ask(reader_reply: str, question: str, memory_answer: str, **config):
    """The route's answer to one question, with the scripted reader that stood behind it (its requests)."""
    with ScriptedOpenAI(lambda request: reader_reply) as server:
        reader = load_chat_model(LLMSpec("openai", "scripted-model", server.base_url))
        [answer] = HybridRoute(reader, PassageIndex.of_documents(DOCUMENTS), HybridConfig(**config)).answer([question], [memory_answer])
    return answer, server


def test_a_supported_memory_answer_is_verified_and_quoted_with_its_span():
    answer, server = ask("unused", "Who is the manager of the Kesby plant?", "Rafael Ondo manages the Kesby plant.")
    assert answer.verified and answer.route == "memory" and answer.answer == "Rafael Ondo manages the Kesby plant."
    assert answer.evidence.doc_id == "plant_kesby.txt" and "Rafael Ondo" in answer.evidence.quote
    assert DOCUMENTS["plant_kesby.txt"][answer.evidence.start:answer.evidence.end] == answer.evidence.quote
    assert server.requests == []  # a supported answer costs no reader call


def test_an_answer_no_passage_supports_goes_to_the_reader_and_is_verified_from_the_passages():
    answer, server = ask("the Corvel Prize", "Which prize did the Tern cell win?", "The Tern cell won the Nobel Prize.", read_with_memory=True)
    assert answer.verified and answer.route == "passages" and answer.answer == "the Corvel Prize"
    assert answer.evidence.doc_id == "product_tern.md" and "Corvel Prize" in answer.evidence.quote
    assert "Nobel" in server.requests[0]["messages"][0]["content"]  # the reader saw the memory's answer beside the passages
    _, server = ask("the Corvel Prize", "Which prize did the Tern cell win?", "The Tern cell won the Nobel Prize.")
    assert "Nobel" not in server.requests[0]["messages"][0]["content"]  # by default it reads the passages alone


@pytest.mark.parametrize("settings, expected", [({}, "a medal"), ({"unverified_answer": "memory"}, "The Tern cell won the Nobel Prize."),
                                                ({"unsupported": "decline"}, IDK)])
def test_what_no_passage_supports_is_marked_or_declined(settings, expected):
    # neither the memory's Nobel Prize nor the reader's "a medal" is stated by a passage: the answer read from the
    # passages is kept by default, the memory's by a setting, or the question declined
    answer, _ = ask("a medal", "Which prize did the Tern cell win?", "The Tern cell won the Nobel Prize.", **settings)
    assert not answer.verified and answer.evidence is None and answer.answer == expected


def test_an_exact_value_question_goes_to_the_passages_first():
    answer, server = ask("2019", "In what year did the Kesby plant open?", "The Kesby plant opened in 2019.")
    assert len(server.requests) == 1 and answer.route == "passages" and answer.answer == "2019" and answer.verified


def test_a_memory_answer_the_questions_words_alone_do_not_retrieve_is_checked_against_what_its_own_words_retrieve():
    documents = {**DOCUMENTS,
                 "olm_bridge.txt": "The Olm bridge crosses the Olm at Kesby. The Olm bridge was built of Olm stone. The Olm bridge was painted in 2020.",
                 "inspections.txt": "Mara Quint inspects the Olm bridge."}
    question, memory_answer = "Who is the inspector of the Olm bridge?", "Mara Quint."
    index = PassageIndex.of_documents(documents)
    assert [p.doc_id for p in index.top(question, 1)] == ["olm_bridge.txt"]  # the question's words rank the wrong passage first
    with ScriptedOpenAI(lambda request: "The Olm bridge was painted.") as server:
        reader = load_chat_model(LLMSpec("openai", "scripted-model", server.base_url))
        [plain] = HybridRoute(reader, index, HybridConfig(top_k=1)).answer([question], [memory_answer])
        [expanded] = HybridRoute(reader, index, HybridConfig(top_k=1, memory_query=True)).answer([question], [memory_answer])
    # without it the reader's answer from the wrong passage wins, its own words "verified" by that passage
    assert plain.route == "passages" and "Mara Quint" not in plain.answer
    assert expanded.route == "memory" and expanded.verified and expanded.evidence.doc_id == "inspections.txt"
    assert expanded.evidence.quote == "Mara Quint inspects the Olm bridge."


def test_chunks_keep_their_spans_in_the_document():
    text = " ".join(f"Sentence number {i} says something about the Kesby plant." for i in range(60))
    chunks = chunk_document("long.txt", text, max_chars=300)
    assert len(chunks) > 5 and all(text[c.start:c.end] == c.text and len(c.text) <= 300 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()  # nothing lost between chunks


def landed_version(store, tmp_path) -> dict:
    """DOCUMENTS uploaded under landing/ and taken as version v000001 up to its passages, as the pipeline's stages do."""
    for doc_id, text in DOCUMENTS.items():
        store.put_bytes(f"{layout.LANDING_PREFIX}{doc_id}", text.encode())
    diff = diff_landing(list(store.list_objects(layout.LANDING_PREFIX)), Cursor())
    store.put_json(layout.version_key("v000001", "manifest.json"), manifest("v000001", diff))
    snapshot_corpus(Workspace(store, ModelRegistry(store, tmp_path / "models"), tmp_path / "work"), "v000001", max_bytes=1_000_000)
    return write_version_passages(store, "v000001")


def test_the_live_index_never_retrieves_a_deleted_document(store, tmp_path):
    """Passages per version in the real bucket; a document deleted from landing/ is gone from the index at once."""
    assert landed_version(store, tmp_path)["documents"] == 3
    index = PassageIndex(live_passages(store))
    assert index.top("Who is the manager of the Kesby plant?", 1)[0].doc_id == "plant_kesby.txt"

    store.delete(f"{layout.LANDING_PREFIX}plant_kesby.txt")  # a takedown: no new version has been made yet
    index = PassageIndex(live_passages(store))
    assert {p.doc_id for p in index.passages} == {"product_tern.md", "policy_travel.txt"}
    assert all(p.doc_id != "plant_kesby.txt" for p in index.top("Who is the manager of the Kesby plant?", 3))


def test_memo_serve_hybrid_quotes_the_supporting_passage_and_follows_a_deletion(store, tmp_path):
    landed_version(store, tmp_path)
    env = {**os.environ, "MEMO_S3_ENDPOINT": store.client.meta.endpoint_url, "MEMO_BUCKET": store.bucket, "MEMO_HOME": str(tmp_path / "home"),
           **CREDENTIALS}
    with ScriptedOpenAI(executive) as executive_server, ScriptedOpenAI(memory) as memory_server:
        process, port, _ = start_serve(["--mode", "single", "--executive", "openai", "--executive-model", "scripted", "--executive-base-url",
                                        executive_server.base_url, "--memory", "openai", "--memory-model", "memory", "--memory-base-url",
                                        memory_server.base_url, "--no-follow", "--hybrid", "--follow-interval", "0.2"], env)
        try:
            openai_client = client(port)
            ask = lambda: openai_client.chat.completions.create(model="memo", messages=[{"role": "user", "content": QUESTION}]).choices[0].message.content  # noqa: E731
            reply = ask()
            assert reply.startswith("Rafael Ondo") and "Verified: plant_kesby.txt, characters" in reply
            assert "The manager of the Kesby plant is Rafael Ondo." in reply  # the quote, in the document's words

            store.delete(f"{layout.LANDING_PREFIX}plant_kesby.txt")  # taken down: never quoted again
            def after_deletion():
                reply = ask()
                return reply if "plant_kesby" not in reply else None

            assert "Unverified" in wait_for(after_deletion, 30, "the deletion to reach the index")
        finally:
            stop(process)


def test_a_sentence_that_only_names_the_answer_is_not_evidence():
    # "# Tern battery cell" states the answer's words but nothing the question asks: it must not verify the answer
    answer, _ = ask("a medal", "Which product did Rafael Ondo design?", "Tern battery cell")
    assert not answer.verified and answer.evidence is None
    answer, _ = ask("unused", "Which battery cell is made by Quillfeather Labs?", "The Tern sodium-ion cell")
    assert answer.verified and answer.evidence.quote.startswith("Tern is the sodium-ion battery cell")

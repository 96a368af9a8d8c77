"""Whole-document teaching (reflections/document.py): every sentence of a document becomes training rows, on the
sample corpus and on public passages the rules were not written for."""

import json
from collections import Counter
from pathlib import Path

import pytest

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.llm.backends import LLMSpec, load_chat_model
from memo_pipelines.qa import normalise, recalled
from memo_pipelines.reflections.document import content_words, document_pairs, sentence_coverage
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from tests.openai_stub import ScriptedOpenAI

MUSIQUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "musique" / "musique_train.json"


def document(doc_id: str, text: str) -> Document:
    return Document(doc_id, f"landing/{doc_id}", "etag", len(text), doc_id.ljust(64, "0"), text)


def musique_documents(limit: int = 12) -> list[Document]:
    if not MUSIQUE.exists():
        pytest.skip("../shared/data is not beside the checkout")
    docs = {}
    for item in json.loads(MUSIQUE.read_text())[:limit]:
        for paragraph in item["paragraphs"]:
            if paragraph["is_supporting"]:
                doc_id = f"p{item['id'][-6:]}_{paragraph['idx']}.md"
                docs[doc_id] = document(doc_id, f"# {paragraph['title']}\n\n{paragraph['paragraph_text']}")
    return list(docs.values())


def test_every_sentence_of_public_passages_is_taught_in_the_documents_words():
    docs = musique_documents()
    rows = []
    for doc in docs:
        pairs = document_pairs(doc, 3, Counter())
        text_words = set(content_words(doc.text))
        for pair in pairs:
            # the answer is the document's own sentence: no word the document does not have ("his" may become "Name's")
            assert set(content_words(pair["answer"])) - {"s"} <= text_words, pair
            # the question names the document's subject in full
            title = doc.text.split("\n", 1)[0].lstrip("# ")
            assert title in pair["question"], pair["question"]
            assert pair["key_answer"].strip() and pair["sources"] == [doc.doc_id]
            assert recalled(pair["answer"], pair["key_answer"]), pair  # the answer states what the question asks for
        rows += [{"answer": p["answer"], "source_doc_ids": p["sources"], "step": "document"} for p in pairs]
    coverage = sentence_coverage(docs, rows)
    assert coverage["sentences"] > 40 and coverage["share"] >= 0.95, coverage


def test_questions_per_sentence_vary_in_type_and_a_pronoun_becomes_the_name():
    doc = document("tern.md", "# Tern battery cell\n\nTern is the sodium-ion cell made by Quillfeather Labs in Kesby.\n"
                              "It won the Corvel Prize in 2022.")
    pairs = document_pairs(doc, 3, Counter())
    by_sentence = Counter(p["answer"] for p in pairs)
    assert len(by_sentence) == 2 and all(n == 3 for n in by_sentence.values())
    assert "Tern battery cell won the Corvel Prize in 2022." in by_sentence  # "It" resolved to the subject
    methods = Counter(p["method"] for p in pairs if p["answer"].startswith("Tern is"))
    assert len(methods) >= 2, methods  # not three blanks of one kind
    blanked = [p for p in pairs if p["method"] == "demask"]
    assert all("___" in p["question"] and p["key_answer"] not in p["question"] for p in blanked)
    assert document_pairs(doc, 0, Counter()) == []


def test_synthesis_with_document_phrasings_covers_what_the_rules_left_out():
    text = ("# Ostery Foils\n\nOstery Foils is a supplier of copper foil to Quillfeather Labs.\n"
            "Ostery Foils has delivered foil to the Kesby plant since 2020, after a long trial of samples.\n"
            "Its warehouse beside the river Olm holds about three months of stock.")
    doc = document("ostery.md", text)
    with ScriptedOpenAI(lambda request: "Who knows?") as server:  # the grounded form and the document rows never call it
        generator = load_chat_model(LLMSpec("openai", "scripted-model", server.base_url))
        without, _ = synthesise_reflections([doc], "v000001", generator, "grounded", config=SynthesisConfig(steps=("fact_extraction", "document"), document_phrasings=0))
        with_doc, stats = synthesise_reflections([doc], "v000001", generator, "grounded",
                                                 config=SynthesisConfig(steps=("fact_extraction", "document"), document_phrasings=2))
        assert server.requests == []
    assert stats.to_json()["kept_by_step"].get("document", 0) >= 5
    before, after = sentence_coverage([doc], without)["share"], sentence_coverage([doc], with_doc)["share"]
    assert after == 1.0 and after > before, (before, after)
    assert any("warehouse" in normalise(r["answer"]) for r in with_doc if r["step"] == "document")

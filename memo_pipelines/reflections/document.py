"""Whole-document teaching: every sentence of a document becomes training signal, whether or not a question rule fits
its clauses.

Each sentence is stated with the document's subject named in full (a sentence that opens with a pronoun gets the
subject's name in its place) and taught as the answer to several questions of different types:
  demask     the sentence with one of its spans (a name, a date, a number, a noun phrase) blanked, after the subject's
             name: "About Green: Green is the fourth studio album by ___." The masked-span objective needs no
             generator, and blanking the names on either side of a relation teaches both directions;
  link       how the subject and one of the sentence's names are connected, asked from the name's side, so the fact is
             reachable from the entity the sentence is not about;
  topic      what about the subject concerns the sentence's head noun ("What about Green concerns the album?").
Questions rotate over the types first, then over the spans, so `phrasings` questions of one sentence are as varied as
the sentence allows. The answer is always the sentence itself, in the document's own words: whatever a person asks
about it, the memory's reply states the fact with its context.

`sentence_coverage` counts how much of a document's text some training row teaches: a sentence is covered when a row's
answer states most of its content words.
"""

import re
from collections import Counter

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.reflections.nlp import parse_documents
from memo_pipelines.qa import STOPWORDS, normalise

# closed-class English words, not a corpus's vocabulary: a sentence opening with one of them is about the subject
SUBJECT_PRONOUNS = {"he": "", "she": "", "it": "", "they": "", "his": "'s", "her": "'s", "its": "'s", "their": "'s"}
SPAN_LABELS = ("PERSON", "ORG", "GPE", "LOC", "FAC", "NORP", "WORK_OF_ART", "PRODUCT", "EVENT", "LAW", "LANGUAGE",
               "DATE", "TIME", "MONEY", "QUANTITY", "CARDINAL", "PERCENT", "ORDINAL")
NAME_LABELS = ("PERSON", "ORG", "GPE", "LOC", "FAC", "NORP", "WORK_OF_ART", "PRODUCT", "EVENT", "LAW", "LANGUAGE")
MIN_WORDS, MAX_WORDS = 4, 60


def content_words(text: str) -> list[str]:
    return [w for w in normalise(text).split() if w not in STOPWORDS]


def document_subject(doc: Document, parsed) -> str:
    """What the document is about: its first heading, else the first name its first sentence gives, else its file name."""
    heading = re.search(r"^#+[ \t]*(.+?)[ \t]*$", doc.text, flags=re.MULTILINE)
    if heading and len(heading[1].split()) <= 12:
        return heading[1].strip()
    for sentence in parsed.sents:
        names = [e.text for e in sentence.ents if e.label_ in NAME_LABELS]
        if names:
            return names[0]
        break
    return re.sub(r"[-_]+", " ", doc.doc_id.rsplit(".", 1)[0]).strip()


def resolved(sentence, subject: str) -> str:
    """The sentence with an opening subject pronoun replaced by the subject's name ("It was founded" -> "Acme was founded")."""
    text = sentence.text.strip()
    if "\n" in text:  # a heading the parser ran into the sentence below it: the sentence is what follows
        return text.rsplit("\n", 1)[-1].strip()
    first = sentence[0].text.lower() if len(sentence) else ""
    if first in SUBJECT_PRONOUNS and sentence[0].pos_ in ("PRON", "DET"):
        text = subject + SUBJECT_PRONOUNS[first] + text[len(sentence[0].text):]
    return text


def names_subject(span: str, subject: str) -> bool:
    """The span is the subject or part of its name ("The Journal of X" for "Journal of X", "Snow" for "Hank Snow")."""
    words = set(content_words(span))
    return not words or words <= set(content_words(subject))


def sentence_spans(sentence, subject: str) -> list[str]:
    """Spans worth blanking, names and values first: named entities, then noun phrases that are not pronouns or the subject."""
    spans = [e.text for e in sentence.ents if e.label_ in SPAN_LABELS]
    spans += [c.text for c in sentence.noun_chunks if c.root.pos_ != "PRON"]
    out = []
    for span in dict.fromkeys(s.strip(" ,.;:'\"") for s in spans):
        if span and not names_subject(span, subject) and len(span.split()) <= 8 and not any(span in o for o in out):
            out.append(span)
    return out


def main_word(sentence) -> str | None:
    """The sentence's head noun as the sentence writes it: what a topic question asks about."""
    root = sentence.root
    for token in [*(t for t in root.children if t.dep_ in ("attr", "dobj", "nsubjpass", "nsubj")), root]:
        if token.pos_ == "NOUN" and token.text.isalpha() and token.text.lower() not in STOPWORDS:
            return token.text.lower()
    return None


def sentence_questions(sentence, text: str, subject: str, linked: set) -> list[tuple[str, str, str]]:
    """(question, key answer, method) for one sentence, alternating types so the first few are as varied as possible;
    `linked`: names already asked about in a link question of the document (one sentence answers each)."""
    spans = sentence_spans(sentence, subject)
    names = [e.text for e in sentence.ents if e.label_ in NAME_LABELS and not names_subject(e.text, subject) and e.text not in linked]
    linked.update(names)
    demask = [(f"About {subject}: {text.replace(span, '___', 1)}", span, "demask") for span in spans if span in text]
    link = [(f"How is {name} connected to {subject}?", name, "link") for name in dict.fromkeys(names)]
    word = main_word(sentence)
    topic = [(f"What about {subject} concerns the {word}?", word, "topic")] if word and not names_subject(word, subject) else []
    out, queues = [], [demask, link, topic]
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


def document_pairs(doc: Document, phrasings: int, log: Counter) -> list[dict]:
    """Up to `phrasings` questions for every sentence of the document, each answered by the sentence itself."""
    if phrasings <= 0:
        return []
    parsed = parse_documents([doc.text])[0]
    subject = document_subject(doc, parsed)
    pairs, linked = [], set()
    for sentence in parsed.sents:
        text = resolved(sentence, subject)
        words = len(text.split())
        if words < MIN_WORDS or words > MAX_WORDS or normalise(text) == normalise(subject):
            log["document sentence too short or too long"] += words < MIN_WORDS or words > MAX_WORDS
            continue
        log["document sentences"] += 1
        answer = text if text.endswith((".", "!", "?")) else text + "."
        for question, key, method in sentence_questions(sentence, text, subject, linked)[:phrasings]:
            pairs.append({"question": question, "answer": answer, "key_answer": key, "sources": [doc.doc_id], "step": "document",
                          "method": method, "chunk": None, "verified": True})
    return pairs


def sentence_coverage(documents: list[Document], rows: list[dict], threshold: float = 0.6) -> dict:
    """The share of the documents' sentences (4 words or more) that some answerable row teaches: a row from the sentence's
    document whose answer states at least `threshold` of the sentence's content words. Also per document."""
    answers: dict[str, list[set]] = {}
    for row in rows:
        if row.get("step") == "unanswerable":
            continue
        for doc_id in row.get("source_doc_ids", []):
            answers.setdefault(doc_id, []).append(set(content_words(row["answer"])))
    per_document, covered_all, total_all = {}, 0, 0
    for doc, parsed in zip(documents, parse_documents([d.text for d in documents])):
        sentences = [set(content_words(s.text)) for s in parsed.sents if len(s.text.split()) >= MIN_WORDS]
        sentences = [s for s in sentences if s]
        taught = answers.get(doc.doc_id, [])
        covered = sum(any(len(s & a) >= threshold * len(s) for a in taught) for s in sentences)
        per_document[doc.doc_id] = round(covered / len(sentences), 4) if sentences else None
        covered_all, total_all = covered_all + covered, total_all + len(sentences)
    return {"share": round(covered_all / total_all, 4) if total_all else None, "sentences": total_all, "covered": covered_all,
            "per_document": per_document}

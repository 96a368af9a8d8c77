"""Quality filters a person would agree with, for a reflection written by any form: the key answer is not a fragment
(a pronoun, a function word, a title cut off like "Dr"), the question is a question and not a sentence with a hole in
it, it names what it is about and has no unresolved pronoun, it does not contain its answer, and the answer states the
key answer. Judged on spaCy's parse of the question and the key answer (parts of speech and entities), so the same
filter scores every generator."""

from memo_pipelines.qa import recalled
from memo_pipelines.reflections.nlp import parse_many
from memo_pipelines.reflections.text import normalise

FUNCTION_POS = {"PRON", "DET", "ADP", "CCONJ", "SCONJ", "PART", "AUX", "PUNCT", "INTJ", "ADV", "SYM"}
WH_TAGS = {"WDT", "WP", "WP$", "WRB"}
PERSONAL = {"he", "she", "it", "they", "him", "her", "them", "his", "its", "their", "hers", "theirs"}
MAX_QUESTION_TOKENS = 30

# the reasons, in the order they are checked
FRAGMENT_KEY = "key answer is a fragment (pronoun or function word)"
CUT_TITLE = "key answer is a cut-off title or abbreviation"
CONTAINS_ANSWER = "question contains its answer"
HOLE = "question is a sentence with a hole in it"
PRONOUN = "question has an unresolved pronoun"
NO_SUBJECT = "question names no subject"
TOO_LONG = "question too long"
UNSTATED = "answer does not state its key answer"
UNBALANCED = "question or key answer cut inside brackets or quotes"


def unbalanced(text: str) -> bool:
    """'South Korean girl group f(x', 'the Hukilau Song" written': a span cut inside a bracket or a quotation."""
    return text.count("(") != text.count(")") or text.count("[") != text.count("]") or text.count('"') % 2 == 1


def cleft_it(token) -> bool:
    """The "it" of a cleft ("Which year was it that ..."), which refers to nothing."""
    doc = token.doc
    return (token.lower_ == "it" and 0 < token.i < len(doc) - 1 and doc[token.i - 1].lemma_ == "be"
            and doc[token.i + 1].lower_ == "that")


def names_subject(question, tokens, key: str, answer: str) -> bool:
    """Whether the question names what it is about: a name, a number or a phrase built on one that the key answer does
    not cover. A short key answer is not the subject ("Who founded Acme?" -> "Acme" names nothing else), but a phrase
    that shares a word with it still is one ("In which town is the Lorne plant?" -> "port town of Lorne"); a
    whole-statement answer (an entity summary) may name its subject."""
    key_words = set(normalise(key).split()) if key.strip() != answer.strip() else set()
    if any((t.pos_ == "PROPN" or t.ent_type_ or t.like_num) and t.lower_ not in key_words for t in tokens[1:]):
        return True
    for chunk in question.noun_chunks:
        content = [t for t in chunk if t.pos_ in ("PROPN", "NOUN", "NUM", "ADJ") and t.tag_ not in WH_TAGS]
        if chunk.start > 0 and any(t.pos_ == "PROPN" or t.ent_type_ for t in content) and {t.lower_ for t in content} - key_words:
            return True
    return False


def problem(question, key, answer: str) -> str | None:
    """The first quality problem of a parsed question and key answer, or None."""
    words = [t for t in key if not t.is_punct]
    if not words or all(t.pos_ in FUNCTION_POS for t in words):
        return FRAGMENT_KEY
    if len(words) == 1 and words[0].is_alpha and len(words[0]) <= 3 and words[0].is_title and not words[0].ent_type_:
        return CUT_TITLE
    if unbalanced(key.text) or unbalanced(question.text):
        return UNBALANCED
    if normalise(key.text) and f" {normalise(key.text)} " in f" {normalise(question.text)} ":
        return CONTAINS_ANSWER
    tokens = [t for t in question if not t.is_space]
    if not tokens or not question.text.strip().endswith("?"):
        return HOLE
    leading = tokens[0].tag_ in WH_TAGS or (tokens[0].pos_ in ("ADP", "PART", "SCONJ") and any(t.tag_ in WH_TAGS for t in tokens[1:3]))
    content = [t for t in tokens if not t.is_punct]
    if not leading or (len(tokens) > 1 and tokens[1].is_punct) or (content and content[-1].tag_ in WH_TAGS):
        return HOLE  # "Thor lands in New Mexico, where astrophysicist what?", "What, John tails ...", "... is whom?"
    if any(t.lower_ in PERSONAL and t.pos_ == "PRON" and not cleft_it(t) for t in tokens):
        return PRONOUN
    if not names_subject(question, tokens, key.text, answer):
        return NO_SUBJECT
    if len(tokens) > MAX_QUESTION_TOKENS:
        return TOO_LONG
    if answer and not recalled(answer, key.text):
        return UNSTATED
    return None


def quality_problems(pairs: list[dict]) -> list[str | None]:
    """A problem per pair ({question, key_answer, answer}), None where it passes; questions and keys parsed in batches."""
    questions = parse_many([p["question"] for p in pairs])
    keys = parse_many([p.get("key_answer") or p["answer"] for p in pairs])
    return [problem(q, k, p.get("answer", "")) for q, k, p in zip(questions, keys, pairs)]


def keep_passing(pairs: list[dict], log) -> list[dict]:
    """The pairs that pass, each drop counted by its reason in log."""
    out = []
    for pair, why in zip(pairs, quality_problems(pairs)):
        if why:
            log[why] += 1
        else:
            out.append(pair)
    return out

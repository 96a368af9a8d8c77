"""Questions about entities no document names: the corpus's own question shapes with the entity swapped for a
plausible one of the same shape (another entity's first word with this one's last word, or an invented name).

Trained on with the answer "I don't know" (step `unanswerable`, method `fabricated_entity`), they teach the memory to
decline what it was never told instead of answering with a fact it knows about a similar name; the held-out probes
ask the same kind of question about other fabricated names (evaluation/probe_rules.py).
"""

import hashlib

from memo_pipelines.qa import is_idk
from memo_pipelines.reflections.text import entity_spans, normalise, sentences

SYLLABLES = "bar dun kel mor tav ril sen lo ha ven ost tri gal pem cor nad vel fin ru sa".split()
ONE_FACT_STEPS = ("fact_extraction", "entity_summary")  # a joined question would keep an answerable half


def invented_name(seed: str, words: int) -> str:
    """A deterministic pronounceable name of `words` words from a seed: no corpus names it."""
    digest = hashlib.sha256(seed.encode()).digest()
    return " ".join((SYLLABLES[digest[2 * i] % len(SYLLABLES)] + SYLLABLES[digest[2 * i + 1] % len(SYLLABLES)]).capitalize() for i in range(words))


def fabricated_entity(entity: str, entities: list[str], known: str, seed: str) -> str | None:
    """Another entity of the same shape absent from the known text (normalised): one entity's first word with another's
    last word, else an invented name."""
    parts = entity.split()
    same_shape = [e.split() for e in entities if len(e.split()) == len(parts) and e != entity]
    candidates = [[*other[:-1], parts[-1]] for other in same_shape] + [[*parts[:-1], other[-1]] for other in same_shape]
    candidates.append(invented_name(seed, len(parts)).split())
    for words in candidates:
        name = " ".join(words)
        if name != entity and normalise(name) not in known:
            return name
    return None


def seeded_order(rows: list[dict], seed: str) -> list[dict]:
    """The rows in an order drawn from `seed`: two callers with different seeds visit different questions first."""
    return sorted(rows, key=lambda r: hashlib.sha256(f"{seed}-{r['id']}".encode()).hexdigest())


def named_once(row: dict) -> list[str]:
    """The entities a question names exactly once, other than its key answer: the ones a swap can replace."""
    return [e for e in entity_spans(row["question"]) if row["question"].count(e) == 1 and normalise(e) != normalise(row["key_answer"])]


def fabricated_questions(rows: list[dict], doc, known: str, limit: int, seed: str) -> list[dict]:
    """Up to `limit` of this document's one-fact questions with their entity replaced: [{question, entity, template_id}].
    Rows are visited in an order drawn from `seed`, so two callers with different seeds use different questions."""
    entities = list(dict.fromkeys(e for s in sentences(doc.text) for e in entity_spans(s) if len(e) > 3))
    out = []
    for row in seeded_order(rows, seed):
        if len(out) >= limit:
            break
        if row.get("step") not in ONE_FACT_STEPS or doc.doc_id not in (row.get("source_doc_ids") or row.get("sources") or []):
            continue
        named = [e for e in named_once(row) if e in entities]
        fake = fabricated_entity(named[0], entities, known, f"{seed}-{row['id']}") if named else None
        if fake:
            question = row["question"].replace(named[0], fake)
            if question not in (q["question"] for q in out):
                out.append({"question": question, "entity": fake, "template_id": row["id"]})
                known += " " + normalise(fake)  # one fabricated name per question
    return out


def invented_name_questions(rows: list[dict], limit: int, seed: str) -> list[str]:
    """Up to `limit` of the rows' fact questions with their named entity swapped for an invented name no row mentions,
    without the documents (the trainer's stop check asks them, TrainConfig.stop_decline): a span of the question that
    is not its opening wh-word stands in for a document's entity."""
    known = normalise(" ".join(f"{r['question']} {r.get('answer', '')}" for r in rows))
    facts = [r for r in rows if r.get("step") == "fact_extraction" and r.get("key_answer") and not is_idk(r["key_answer"])]
    out = []
    for row in seeded_order(facts, seed):
        if len(out) >= limit:
            break
        named = [e for e in named_once(row) if len(e) > 3 and row["question"].find(e) > 0]
        name = invented_name(f"{seed}-{row['id']}", len(named[0].split())) if named else None
        if name and normalise(name) not in known:
            out.append(row["question"].replace(named[0], name))
            known += " " + normalise(name)
    return out

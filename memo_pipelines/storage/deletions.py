"""What a deletion takes away, from the bucket's records: which documents a model learned were deleted since, and the
questions of theirs that the memory must no longer answer (the forget update's targets, the forgetting gate's probes).
A rewritten document's earlier text is taken away the same way, less what its new text still states.

A question stays out when a live row still answers it, or when its key answer is a live row's key answer: a fact a
standing document still gives is not the deleted document's to take away.
"""

from memo_pipelines.qa import IDK, is_idk, normalise
from memo_pipelines.storage.history import document_changes, live_reflections
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.objectstore import ObjectStore


def deleted_documents(store: ObjectStore, after: str | None, up_to: str, landing_prefix: str) -> tuple[list[str], list[str]]:
    """(deleted, rewritten): documents that landed at or before version `after` and changed in a version after it, up
    to `up_to`, split by what they are at `up_to`: gone, or standing with new text (a rewrite, or a deletion and a new
    upload under the same key)."""
    if after is None:
        return [], []
    deleted, rewritten = [], []
    for doc, history in sorted(document_changes(store, up_to, landing_prefix).items()):
        later = [kind for v, kind in history if after < v <= up_to]
        if later and any(v <= after and kind == "landed" for v, kind in history):
            (deleted if later[-1] == "deleted" else rewritten).append(doc)
    return deleted, rewritten


def deleted_rows(store: ObjectStore, documents: list[str], changes: dict[str, list[tuple[str, str]]]) -> list[dict]:
    """The answerable reflections and fact probes of the texts of `documents` that no longer stand at the version
    `changes` (document_changes) runs to: every text of a deleted document, every text but the latest of a rewritten
    one (a row cites documents of its own version only), each with the version it came from."""
    wanted = set(documents)
    earlier_texts: dict[str, set[str]] = {}  # version: the documents whose text then is gone now
    for doc, history in changes.items():
        if doc not in wanted:
            continue
        landings = [v for v, kind in history if kind == "landed"]
        if history[-1][1] == "landed":  # the document stands: its latest text is live, not forgotten
            landings = landings[:-1]
        for version in landings:
            earlier_texts.setdefault(version, set()).add(doc)
    rows = []
    for version, docs in sorted(earlier_texts.items()):
        for name, kind in (("reflections.jsonl", "reflection"), ("probes.jsonl", "probe")):
            for row in store.get_jsonl(version_key(version, name)) if store.exists(version_key(version, name)) else []:
                answerable = row.get("key_answer") and not is_idk(row["key_answer"]) and row.get("kind", "fact") == "fact"
                if answerable and row.get("step") != "unanswerable" and docs & set(row.get("source_doc_ids") or []):
                    rows.append({"question": row["question"], "key_answer": row["key_answer"], "kind": kind, "version": version,
                                 "source_doc_ids": [d for d in row["source_doc_ids"] if d in docs]})
    return rows


def standing_texts(store: ObjectStore, documents: list[str], changes: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """{doc_id: normalised text} of those `documents` that stand at the version `changes` runs to (rewritten ones),
    from the snapshot of the version that last landed each."""
    wanted = set(documents)
    latest = {doc: history[-1][0] for doc, history in changes.items() if doc in wanted and history[-1][1] == "landed"}
    texts = {}
    for version in sorted(set(latest.values())):
        snapshot = store.get_json(version_key(version, "snapshot.json")) or {"documents": []}
        texts |= {d["doc_id"]: normalise(d["text"]) for d in snapshot["documents"] if latest.get(d["doc_id"]) == version}
    return texts


def still_live(row: dict, live_questions: set[str], live_answers: set[str]) -> bool:
    return normalise(row["question"]) in live_questions or normalise(row["key_answer"]) in live_answers


def forget_targets(store: ObjectStore, documents: list[str], up_to: str, live: dict[str, list[dict]], landing_prefix: str) -> list[dict]:
    """The questions to decline, one each ({question, answer: IDK, key_answer: the deleted answer, kind, source_doc_ids}):
    the deleted documents' reflections and fact probes that no live row still answers (see the module docstring)."""
    if not documents:  # the plan of every update asks; most delete nothing, and the manifests need not be read
        return []
    rows = [r for v in live.values() for r in v]
    live_questions = {normalise(r["question"]) for r in rows}
    live_answers = {normalise(r["key_answer"]) for r in rows if r.get("key_answer") and not is_idk(r["key_answer"])}
    changes = document_changes(store, up_to, landing_prefix)  # every manifest read once, for both questions
    standing = standing_texts(store, documents, changes)
    targets, seen = [], set()
    for row in deleted_rows(store, documents, changes):
        if still_live(row, live_questions, live_answers) or normalise(row["question"]) in seen:
            continue
        if any(normalise(row["key_answer"]) in standing.get(doc, "") for doc in row["source_doc_ids"]):
            continue  # a rewritten document that still states this answer: the fact stands, in the new text's words
        seen.add(normalise(row["question"]))
        targets.append({**row, "answer": IDK})
    return targets


def forgotten_questions(store: ObjectStore, parent_version: str | None, version: str, landing_prefix: str) -> list[dict]:
    """The questions (reflections and fact probes) of the documents deleted or rewritten since the version the parent
    model was trained for, up to `version`, that no live row still answers and no rewritten text still states: what the
    candidate must no longer answer, whichever strategy made it."""
    deleted, rewritten = deleted_documents(store, parent_version, version, landing_prefix)
    if not deleted and not rewritten:
        return []
    live, _ = live_reflections(store, version, landing_prefix)
    return forget_targets(store, deleted + rewritten, version, live, landing_prefix)

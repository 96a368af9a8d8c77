"""The new-version gate of a small version: decided only on enough reworded probes, else judged with the next version.

A version of one short document has a probe or two. 0 of 2 recalled is what a memory that recalls half its facts
scores one time in four, so such a gate says nothing and must not reject the version. Below
Gates.min_new_version_probes the gate passes as undecided and names the versions it pooled; the next version's gate
pools their probes with its own (the candidate answers every live version's probes anyway) and decides on all of them.
A version with no fact probe at all still fails: that is a probe writer that found nothing, not a small sample.
"""

from memo_pipelines.evaluation.card import Gates, ReportCard
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.objectstore import ObjectStore

GATE = "reworded_recall_new_version"


def carried_versions(store: ObjectStore, earlier_versions: list[str]) -> list[str]:
    """The versions an undecided gate of any of `earlier_versions` (the parent model's version, the pending versions
    this update learns) left to be judged with the next version."""
    carried = set()
    for version in earlier_versions:
        gate = (store.get_json(version_key(version, "evaluation.json")) or {}).get("new_version_gate") or {}
        if gate and not gate["decided"]:
            carried |= set(gate["versions"])
    return sorted(carried)


def pooled_gate(card: ReportCard, gates: Gates, carried: list[str], results: list[dict]) -> tuple[list[dict], dict]:
    """`results` with the new-version gate decided on this version's fact probes pooled with those of the `carried`
    versions still live, and the record evaluation.json keeps: {"versions", "probes", "recalled", "decided"}."""
    versions = [card.version, *(v for v in carried if v != card.version and v in card.row)]
    measured = {v: card.probes_measured.get(v, 0) for v in versions}
    probes = sum(measured.values())
    recalled = sum(round(card.row[v] * measured[v]) for v in versions if card.row.get(v) is not None)
    record = {"versions": versions, "probes": probes, "recalled": recalled, "decided": True}
    own = next(g for g in results if g["name"] == GATE)
    # nothing measured; a version with no facts of its own (Snapshot.nothing_to_learn) still decides on what earlier ones carried
    if probes == 0 or own["passed"] and own["value"] is None and not any(measured[v] for v in versions[1:]):
        return results, record
    recall = round(recalled / probes, 4)
    pooled = f" ({', '.join(f'{v}: {measured[v]}' for v in versions)})" if len(versions) > 1 else ""
    if probes < gates.min_new_version_probes:
        record["decided"] = False
        gate = {**own, "value": recall, "passed": True,
                "reason": f"{recalled} of {probes} probes{pooled}: fewer than the {gates.min_new_version_probes} a decision needs, "
                          "so not decided here; judged with the next version's probes"}
    else:
        gate = {**own, "value": recall, "passed": recall >= gates.min_heldout_recall,
                "reason": f"{recalled} of {probes} probes{pooled}"}
    return [gate if g["name"] == GATE else g for g in results], record

"""The report card of a candidate memory, and the promotion gates read from it.

R[v][k] is the recall of version k's reworded probes (its facts asked in a form never trained on) after update v (every k <= v whose documents are still live).
A candidate's card carries the matrix of its lineage (the rows of the promoted models it was trained on top of) plus
its own row, so retention is judged against each version's best value ever, not against the parent: forgetting
cannot compound a little at a time with every gate green.

    ACC         mean over k of R[v][k]
    BWT         mean over k < v of R[v][k] - R[k][k]  (backward transfer; negative is forgetting)
    forgetting  mean over k < v of max_{u < v} R[u][k] - R[v][k]
    abstention  share of unanswerable probes answered "I don't know"; hallucination: share answered otherwise
"""

from dataclasses import asdict, dataclass, field

from memo_pipelines.qa import ask_memory, is_idk, recalled


@dataclass(frozen=True)
class Gates:
    """Promotion floors: low enough that the embedded 135M memory passes with what it learns, high enough to block a
    memory that learnt nothing, never declines, forgot the base model's general answers or was tuned into noise
    (tests/test_gates.py)."""

    min_heldout_recall: float = 0.1  # this version's reworded probes answered with their key answer
    max_forgetting: float = 0.15  # an earlier version's reworded-probe recall may drop at most this far below its best
    min_abstention: float = 0.2  # unanswerable probes answered "I don't know"
    # gold-answer log-likelihood per token (nats) the candidate may lose against the base: a healthy update loses 2 to
    # 3.5 (mostly the answer's first token), a memory tuned into noise about 7
    max_general_drop: float = 4.0
    # questions (reflections, fact probes) of documents deleted since the parent's version that may still get their deleted key answer
    max_deleted_answer_rate: float = 0.0
    sample_size: int = 60  # training rows whose recall is reported (a secondary line, not a gate)
    general_size: int = 100  # general questions (NQ-open sample)
    # fewer of a version's reworded fact probes than this cannot reject it: its gate is decided with the next version's
    # (evaluation/undecided.py); 0 of 4 is what a memory recalling half its facts scores one time in sixteen
    min_new_version_probes: int = 6
    # an earlier version's probes scored, of each kind (facts, unanswerable): a fixed sample (by probe id), so every
    # evaluation asks the same ones and retention compares like with like; 0 scores every probe. The new version's are
    # all scored. Past earlier_probes_total in all, each earlier version's sample shrinks to an equal share (4 at
    # least), so a version's evaluation stops growing with the number of versions before it
    earlier_probes: int = 64
    earlier_probes_total: int = 512
    # an earlier version measured on fewer fact probes than this has no retention gate of its own (a drop of one probe
    # in four is 0.25, past max_forgetting by chance): such versions are judged together, their probes pooled
    min_retention_probes: int = 8


def score_probes(memory, probes: list[dict]) -> list[dict]:
    """Each probe with the memory's answer and its outcome: "recalled", "declined" or "wrong" for a fact;
    "declined" or "hallucinated" for an unanswerable probe."""
    answers = ask_memory(memory, [p["question"] for p in probes]) if probes else []
    scored = []
    for probe, answer in zip(probes, answers):
        if probe["kind"] == "unanswerable":
            outcome = "declined" if is_idk(answer) else "hallucinated"
        else:
            outcome = "recalled" if recalled(answer, probe["key_answer"]) else "declined" if is_idk(answer) else "wrong"
        scored.append({"id": probe["id"], "question": probe["question"], "expected": probe["key_answer"], "kind": probe["kind"],
                       "answer": answer, "outcome": outcome})
    return scored


def share(items: list[dict], outcome: str) -> float | None:
    return round(sum(i["outcome"] == outcome for i in items) / len(items), 4) if items else None


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


@dataclass
class ReportCard:
    version: str
    matrix: dict  # {update version: {probed version: reworded-probe recall}}
    probes_measured: dict  # {probed version: number of live fact probes}
    abstention: float | None
    hallucination: float | None
    wrong_answers: float | None  # answerable probes answered with something else than their key (not declined)
    general: dict  # candidate and base: accuracy, loglik; loglik_delta
    train_row_recall: float | None
    weights: dict  # {"parameters": n, "finite": bool}
    user_evals: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)
    nothing_to_learn: bool = False  # the version brings deletions, or documents already learned, and no new text (corpus/snapshot.py)
    forgotten: dict | None = None  # evaluation/forgetting.py check_forgotten over the questions of documents deleted since the parent's version

    @property
    def row(self) -> dict:
        return self.matrix.get(self.version, {})

    @property
    def heldout_recall(self) -> float | None:
        return self.row.get(self.version)

    @property
    def acc(self) -> float | None:
        return mean(self.row.values())

    def best_before(self, k: str) -> float | None:
        return max((r[k] for u, r in self.matrix.items() if u < self.version and r.get(k) is not None), default=None)

    @property
    def forgetting_by_version(self) -> dict:
        out = {}
        for k, now in self.row.items():
            best = self.best_before(k)
            if k < self.version and best is not None and now is not None:
                out[k] = round(best - now, 4)
        return out

    @property
    def forgetting(self) -> float | None:
        return mean(self.forgetting_by_version.values())

    @property
    def bwt(self) -> float | None:
        return mean(self.row[k] - self.matrix[k][k] for k in self.row if k < self.version and self.matrix.get(k, {}).get(k) is not None)

    def gate_results(self, gates: Gates) -> list[dict]:
        """One result per gate: name, passed, value, threshold, reason. A gate that measured nothing fails."""
        def gate(name, value, threshold, passed, reason):
            return {"name": name, "value": value, "threshold": threshold, "passed": bool(passed), "reason": reason}

        parameters, finite = self.weights.get("parameters", 0), self.weights.get("finite", False)
        results = [gate("weights_finite", finite, True, parameters > 0 and finite,
                        "no weights measured" if not parameters else "every weight is finite" if finite else "non-finite weights")]
        recall_now = self.heldout_recall
        if recall_now is None and self.nothing_to_learn:
            results.append(gate("reworded_recall_new_version", None, gates.min_heldout_recall, True,
                                "the version brings deletions or documents already learned, no facts of its own to probe"))
        else:
            results.append(gate("reworded_recall_new_version", recall_now, gates.min_heldout_recall,
                                recall_now is not None and recall_now >= gates.min_heldout_recall,
                                "no reworded fact probes for this version" if recall_now is None else f"{self.probes_measured.get(self.version, 0)} probes"))
        if self.forgotten and self.forgotten["asked"]:
            rate = self.forgotten["answer_rate"]
            results.append(gate("deleted_documents_forgotten", rate, gates.max_deleted_answer_rate, rate <= gates.max_deleted_answer_rate,
                                f"{self.forgotten['answered']} of {self.forgotten['asked']} deleted documents' questions still answered, "
                                f"{self.forgotten['declined']} declined"))
        pooled = []  # (version, probes, now, best) of versions measured on too few probes for a gate of their own
        for k in sorted(k for k in self.row if k < self.version):
            best, now = self.best_before(k), self.row[k]
            if best is None:
                continue  # never measured before (a version no promoted model learnt): nothing to retain yet
            if now is not None and self.probes_measured.get(k, 0) < gates.min_retention_probes:
                pooled.append((k, self.probes_measured.get(k, 0), now, best))
                continue
            floor = round(best - gates.max_forgetting, 4)
            results.append(gate(f"retention_{k}", now, floor, now is not None and now >= floor, f"best {best:.2f}, allowed drop {gates.max_forgetting}"))
        if pooled:
            probes = sum(n for _, n, _, _ in pooled)
            now = round(sum(n * v for _, n, v, _ in pooled) / probes, 4)
            floor = round(sum(n * b for _, n, _, b in pooled) / probes - gates.max_forgetting, 4)
            results.append(gate("retention_pooled", now, floor, now >= floor,
                                f"{len(pooled)} versions of fewer than {gates.min_retention_probes} probes each ({probes} in all): "
                                f"their recall against their best, weighted by probes; allowed drop {gates.max_forgetting}"))
        results.append(gate("abstention", self.abstention, gates.min_abstention,
                            self.abstention is not None and self.abstention >= gates.min_abstention,
                            "no unanswerable probes" if self.abstention is None else "share of unanswerable probes declined"))
        delta = self.general.get("loglik_delta")
        results.append(gate("general_ability", delta, -gates.max_general_drop, delta is not None and delta >= -gates.max_general_drop,
                            "no general questions measured" if delta is None else "gold-answer log-likelihood per token, candidate minus base"))
        return results

    def to_json(self) -> dict:
        return {**asdict(self), "heldout_recall": self.heldout_recall, "acc": self.acc, "bwt": self.bwt, "forgetting": self.forgetting,
                "forgetting_by_version": self.forgetting_by_version}


def weight_figures(model) -> dict:
    import torch

    parameters = list(model.parameters()) if model is not None else []
    return {"parameters": sum(p.numel() for p in parameters), "finite": bool(parameters) and all(bool(torch.isfinite(p).all()) for p in parameters)}


def build_card(candidate, version: str, live_probes: dict[str, list[dict]], lineage_matrix: dict, training_sample: list[dict],
               general: dict, base_general: dict, user_evals: dict | None = None) -> ReportCard:
    """Score the candidate on every live version's probes and put its row under the lineage's matrix."""
    from memo_pipelines.evaluation.metrics import recall

    row, measured, unanswerable, wrong, samples = {}, {}, [], [], []
    for k in sorted(live_probes):
        scored = score_probes(candidate, live_probes[k])
        facts = [s for s in scored if s["kind"] == "fact"]
        measured[k] = len(facts)
        if facts:
            row[k] = share(facts, "recalled")
        unanswerable += [s for s in scored if s["kind"] == "unanswerable"]
        wrong += facts
        if k == version:
            samples = scored[:20]
    matrix = {u: dict(r) for u, r in lineage_matrix.items() if u < version}
    matrix[version] = row
    train_recall = recall(candidate, training_sample)[0] if training_sample else None
    loglik, base_loglik = general.get("loglik"), base_general.get("loglik")
    general_card = {"n": general.get("n", 0), "accuracy": general.get("accuracy"), "loglik": loglik, "base_accuracy": base_general.get("accuracy"),
                    "base_loglik": base_loglik, "loglik_delta": round(loglik - base_loglik, 4) if loglik is not None and base_loglik is not None else None,
                    "answers": general.get("answers", [])[:10]}
    return ReportCard(version, matrix, measured, share(unanswerable, "declined"), share(unanswerable, "hallucinated"), share(wrong, "wrong"),
                      general_card, round(train_recall, 4) if train_recall is not None else None, weight_figures(getattr(candidate, "model", None)),
                      user_evals or {}, samples)

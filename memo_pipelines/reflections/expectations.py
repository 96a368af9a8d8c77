"""Great Expectations suites over the reflection dataset; each check states one property."""

import os


MIN_VERIFIED_SHARE = 0.5  # the verified_share check's default threshold

STEPS = ["fact_extraction", "consolidation", "entity_surfacing", "document", "cross_document", "unanswerable", "entity_summary"]


def validate_reflections(
    rows: list[dict], doc_ids: list[str], verification: dict | None = None, min_verified_share: float = MIN_VERIFIED_SHARE,
    min_rows: int = 1,
) -> dict[str, dict]:
    """{check name: {"passed": bool, "metadata": {...}}} for the reflection checks.

    verification: {"passed": n, "failed": m} counts of pairs checked in synthesis (every checked pair is one 0/1 value
    of the `verified_share` suite, so the share is a Great Expectations column mean). min_rows 0: a version that records
    deletions only has no rows to make."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "id": r["id"],
                "question": r["question"].strip(),
                "answer": r["answer"].strip(),
                "pair": f"{r['question'].strip().lower()}\x00{r['answer'].strip().lower()}",
                "sources_known": bool(r["source_doc_ids"]) and set(r["source_doc_ids"]) <= set(doc_ids),
                "step": r.get("step"),
            }
            for r in rows
        ],
        columns=["id", "question", "answer", "pair", "sources_known", "step"],
    )
    verification = verification or {}
    outcomes_frame = pd.DataFrame({"passed": [1.0] * verification.get("passed", 0) + [0.0] * verification.get("failed", 0)})
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("reflections")
    batch = source.add_dataframe_asset("rows").add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    checked = source.add_dataframe_asset("verification").add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": outcomes_frame}
    )
    suites = {
        "fields_not_empty": [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=min_rows),
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column="question", min_value=1),
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column="answer", min_value=1),
        ],
        "no_duplicates": [
            gx.expectations.ExpectColumnValuesToBeUnique(column="id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="pair"),
        ],
        "valid_provenance": [
            gx.expectations.ExpectColumnValuesToBeInSet(column="sources_known", value_set=[True]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="step", value_set=STEPS),
        ],
    }
    outcomes = {}
    for name, expectations in suites.items():
        results = [batch.validate(e) for e in expectations]
        outcomes[name] = {
            "passed": all(r.success for r in results),
            "metadata": {
                "rows": len(frame),
                "failed_expectations": [r.expectation_config.type for r in results if not r.success],
                "unexpected_count": sum(int(r.result.get("unexpected_count", 0) or 0) for r in results),
            },
        }
    # no checked pairs (a run of step 1 only) leaves nothing to gate
    if len(outcomes_frame):
        result = checked.validate(gx.expectations.ExpectColumnMeanToBeBetween(column="passed", min_value=min_verified_share))
        share = float(outcomes_frame["passed"].mean())
        outcomes["verified_share"] = {"passed": result.success, "metadata": {"share_passed": round(share, 4), "threshold": min_verified_share,
                                                                           "checked": len(outcomes_frame)}}
    else:
        outcomes["verified_share"] = {"passed": True, "metadata": {"share_passed": None, "threshold": min_verified_share, "checked": 0}}
    return outcomes

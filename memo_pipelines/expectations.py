"""Great Expectations suites over the reflection dataset; each check states one property."""

import os


def validate_reflections(rows: list[dict], doc_ids: list[str]) -> dict[str, dict]:
    """{check name: {"passed": bool, "metadata": {...}}} for the reflection checks."""
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
            }
            for r in rows
        ],
        columns=["id", "question", "answer", "pair", "sources_known"],
    )
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("reflections")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suites = {
        "fields_not_empty": [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column="question", min_value=1),
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column="answer", min_value=1),
        ],
        "no_duplicates": [
            gx.expectations.ExpectColumnValuesToBeUnique(column="id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="pair"),
        ],
        "valid_provenance": [gx.expectations.ExpectColumnValuesToBeInSet(column="sources_known", value_set=[True])],
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
    return outcomes

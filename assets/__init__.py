"""Dagster assets and asset checks, one module per stage. Thin: each calls one memo_pipelines function."""

import dagster as dg


def blocking_checks(asset: str, checks: dict[str, str]) -> list[dg.AssetCheckSpec]:
    """{name: what it states} as blocking checks: a failed one stops every asset downstream of `asset`."""
    return [dg.AssetCheckSpec(name, asset=asset, blocking=True, description=text) for name, text in checks.items()]


def md_table(headers: list[str], rows: list[list]) -> str:
    """A markdown table for the UI; cells are document-derived text, so pipes and newlines are neutralised."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")[:200]

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])

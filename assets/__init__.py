"""Dagster assets and asset checks, one module per stage. Thin: each calls one memo_pipelines function."""


def md_table(headers: list[str], rows: list[list]) -> str:
    """A markdown table for the UI; cells are document-derived text, so pipes and newlines are neutralised."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")[:200]

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])

"""Dagster assets and asset checks, one module per stage. Thin: each calls one memo_pipelines function."""

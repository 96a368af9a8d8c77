"""Production configuration by name and environment alone: the prod code location, its executor, and AWS S3."""

import importlib
import sys

import dagster as dg
import pytest

from memo_pipelines.orchestration.executors import executor_by_name


def load_prod(monkeypatch, executor: str) -> dg.Definitions:
    monkeypatch.setenv("MEMO_EXECUTOR", executor)
    sys.modules.pop("memo_pipelines.orchestration.prod", None)
    return importlib.import_module("memo_pipelines.orchestration.prod").defs


def test_prod_code_location_runs_steps_on_the_named_executor(monkeypatch):
    for name in ["multiprocess", "in_process"]:
        job = load_prod(monkeypatch, name).resolve_job_def("memo_pipeline")
        assert job.executor_def.name == name
    # the local code location keeps Dagster's default: one process per step on this machine
    from memo_pipelines.orchestration.definitions import defs

    assert defs.resolve_job_def("memo_pipeline").executor_def.name == "multi_or_in_process_executor"


def test_prod_reads_s3_from_the_environment_with_no_endpoint(monkeypatch):
    resources = load_prod(monkeypatch, "multiprocess").resources
    # no endpoint_url: boto3 talks to AWS S3 with its own credential chain (instance role, env, profile)
    assert resources["object_store"].endpoint_url is None
    assert resources["object_store"].secret_access_key is None
    assert resources["generator"].backend == "openai"


def test_unknown_or_missing_executors_say_what_to_do():
    with pytest.raises(ValueError, match="choose one of in_process, multiprocess, celery, k8s"):
        executor_by_name("spark")
    for name in ["celery", "k8s"]:
        try:
            executor = executor_by_name(name)
        except RuntimeError as error:  # the extra is not installed here
            assert f"memo-pipelines[{name}]" in str(error)
        else:
            assert executor.name == name


@pytest.mark.parametrize("config", ["dagster.yaml", "configs/dagster.prod.yaml"])
def test_every_instance_config_runs_one_run_per_version_at_a_time(config, tmp_path):
    # the real instance reads the file (its storage swapped for SQLite here: the PostgreSQL test starts a server)
    from pathlib import Path

    import yaml

    settings = yaml.safe_load((Path(__file__).resolve().parents[1] / config).read_text())
    settings.pop("storage", None)
    settings.pop("run_launcher", None)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits

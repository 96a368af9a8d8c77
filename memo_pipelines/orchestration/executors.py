"""Where a run's steps execute, chosen by name: in this process, one process per step on this machine, Celery
workers, or one Kubernetes pod per step. The last two come with the extras `celery` and `k8s`."""

import importlib

import dagster as dg

EXECUTORS = {  # name: (module, attribute, extra that installs it)
    "in_process": ("dagster", "in_process_executor", None),
    "multiprocess": ("dagster", "multiprocess_executor", None),
    "celery": ("dagster_celery", "celery_executor", "celery"),
    "k8s": ("dagster_k8s", "k8s_job_executor", "k8s"),
}


def executor_by_name(name: str) -> dg.ExecutorDefinition:
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    module, attribute, extra = EXECUTORS[name]
    try:
        executor = getattr(importlib.import_module(module), attribute)
    except ImportError as error:
        raise RuntimeError(f"executor {name!r} needs the `{extra}` extra: pip install 'memo-pipelines[{extra}]'") from error
    if name == "celery":
        # the broker address is a deployment secret: read from the environment when the run starts, never stored here
        return executor.configured({"broker": {"env": "MEMO_CELERY_BROKER_URL"}}, name="celery")
    return executor

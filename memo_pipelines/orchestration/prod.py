"""The production code location (configs/workspace.prod.yaml): AWS S3 or any S3 by configuration, an
OpenAI-compatible generator, and the executor named by MEMO_EXECUTOR (multiprocess by default; celery or k8s to run
steps on other machines). Read only when a deployment loads this module, never by the local code location."""

import os

from memo_pipelines.orchestration.definitions import Environment, build_definitions
from memo_pipelines.orchestration.executors import executor_by_name

defs = build_definitions(Environment.PROD, executor=executor_by_name(os.environ.get("MEMO_EXECUTOR", "multiprocess")))

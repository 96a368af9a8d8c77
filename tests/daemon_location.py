"""The code location tests/test_daemon.py serves to a real `dagster-daemon`: the project's definitions over the test's
bucket, with tiny-model resources and steps in one process. What to point at comes from MEMO_DAEMON_SPEC (JSON: endpoint_url,
bucket, work_dir, base_dir, trainer, evaluation), set by the test for the daemon it starts."""

import json
import os
from pathlib import Path

import dagster as dg

from memo_pipelines.orchestration.definitions import build_definitions
from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client
from tests.conftest import CREDENTIALS
from tests.pipeline_helpers import pipeline_resources

spec = json.loads(os.environ["MEMO_DAEMON_SPEC"])
client = make_s3_client(spec["endpoint_url"], CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
resources = pipeline_resources(ObjectStore(client, spec["bucket"]), Path(spec["work_dir"]), Path(spec["base_dir"]), spec.get("trainer"),
                               spec.get("evaluation"))
# one process for the whole run: on 2 cores a process per step spends more time importing than working
defs = build_definitions(resources=resources, executor=dg.in_process_executor)

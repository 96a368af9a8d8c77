"""Fault injection over the real asset graph: a real Dagster instance, a real S3 server, a scripted LLM endpoint.

Faults are injected at the edges (the HTTP endpoint answers 500s, late or with garbage; the S3 client's requests are
refused before they leave it; the training child process is killed by a signal), never by patching our code.
"""

import json
import re
import shutil
import signal
import threading
import time
from contextlib import contextmanager

import boto3
import dagster as dg
import psutil
import pytest
import torch
from botocore.awsrequest import AWSResponse
from safetensors.torch import load_file

from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from memo_pipelines.corpus.snapshot import Snapshot
from memo_pipelines.memory.training import run_training_subprocess
from tests.openai_stub import ScriptedOpenAI
from tests.pipeline_helpers import pipeline_resources
from tests.test_corpus import BAD_OF_EACH_FORMAT, GOOD_OF_EACH_FORMAT

VERSION = "v000001"
DOCS = {
    "tern.md": "Tern is the sodium-ion battery cell made by Quillfeather Labs. The Tern cell stores 180 watt-hours per kilogram.",
    "kesby.txt": "The Kesby plant employs 340 people. The Kesby plant opened in 2019 beside the river Olm.",
    "heron.html": "<p>Heron is the solid-state cell project of Quillfeather Labs.</p><p>Ines Halloran leads the Heron project.</p>",
    "suppliers.json": json.dumps({"note": "Brackwater Minerals supplies lithium carbonate to the Kesby plant."}),
}


def qa_pairs(request: dict) -> str:
    """A capable generator: one grounded pair per sentence of the chunk in the prompt."""
    prompt = request["messages"][-1]["content"]
    chunk = re.search(r"<document[^>]*>\n(.*)\n</document>", prompt, re.S).group(1)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", chunk) if s.strip()]
    return json.dumps([{"question": f"What is stated about {' '.join(s.split()[:3])}?", "answer": s} for s in sentences])


@pytest.fixture
def job_run(store, tiny_base, tmp_path):
    """execute_job over the real graph on a persistent test instance; returns run(assets, generator=..., reexecute=run_id)."""
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield from _job_runner(instance, store, tiny_base, tmp_path)


def _job_runner(instance, store, tiny_base, tmp_path):
    instance.add_dynamic_partitions("corpus_versions", [VERSION])
    for name, text in DOCS.items():
        store.put_bytes(f"landing/{name}", text.encode())
    store.put_json(f"versions/{VERSION}/manifest.json", {"version": VERSION, "deleted": [],
                                                           "objects": [{"key": f"landing/{n}", "etag": "", "size": len(t)} for n, t in DOCS.items()]})
    base = {"endpoint_url": store.client.meta.endpoint_url, "bucket": store.bucket, "work_dir": str(tmp_path / "work"), "base_dir": str(tiny_base)}

    def run(assets: list[str], reexecute: str | None = None, retries: bool = True, **spec) -> dg.JobExecutionResult:
        # the spec is part of the job's reconstruction key: a cached definition from another test is never reused
        job = dg.build_reconstructable_job("tests.pipeline_helpers", "reconstructable_job", (json.dumps({**base, "assets": assets, **spec}),))
        options = dg.ReexecutionOptions.from_failure(reexecute, instance) if reexecute else None
        # retries=False: the step fails at its first error instead of after the retry policy's waits (about 110 s)
        run_config = {} if retries else {"execution": {"config": {"retries": {"disabled": {}}}}}
        # execute_job gives a re-execution only the tags passed here (the UI copies the parent's), so the partition goes again
        return dg.execute_job(job, instance, tags={"dagster/partition": VERSION}, reexecution_options=options, run_config=run_config)

    run.instance = instance
    yield run


def materialization(result: dg.JobExecutionResult, asset: str) -> dict:
    events = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.path[-1] == asset]
    assert events, f"{asset} was not materialized"
    return {k: v.value for k, v in events[-1].event_specific_data.materialization.metadata.items()}


def snapshot_of(store) -> Snapshot:
    return Snapshot.from_json(store.get_json(f"versions/{VERSION}/snapshot.json"))


def executed_steps(result: dg.JobExecutionResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def openai_generator(server: ScriptedOpenAI, **overrides) -> dict:
    # step 1 only: one request per document, so the faults below land on known documents
    return {"backend": "openai", "model": "scripted", "base_url": server.base_url, "strategy": "llm_json", "max_retries": 1,
            "timeout_s": 2.0, "concurrency": 1, "steps": ["fact_extraction"], **overrides}


def test_reflections_killed_mid_version_resume_from_the_cache_and_match_an_uninterrupted_run(job_run, store):
    healthy = {"calls": 0, "fail_after": 2}

    def responder(request):  # the endpoint dies after two documents: the client retries once, then the step fails
        healthy["calls"] += 1
        return qa_pairs(request) if healthy["calls"] <= healthy["fail_after"] else {"status": 500, "message": "overloaded"}

    with ScriptedOpenAI(responder) as server:
        first = job_run(["corpus_snapshot", "reflections"], retries=False, generator=openai_generator(server))
        assert not first.success
        assert {e.step_key for e in first.all_events if e.event_type_value == "STEP_FAILURE"} == {"reflections"}
        assert not store.exists(f"versions/{VERSION}/reflections.jsonl")
        assert len(list(store.list_objects("cache/reflections/"))) == 2  # the two documents done before the fault

        healthy["fail_after"] = 10**6
        calls_before = len(server.requests)
        second = job_run(["corpus_snapshot", "reflections"], reexecute=first.run_id, generator=openai_generator(server))
        assert second.success
        assert executed_steps(second) == {"reflections"}  # the snapshot is not redone
        metadata = materialization(second, "reflections")
        assert metadata["cache_hits"] == 2 and metadata["generator_calls"] == 2
        assert len(server.requests) - calls_before == 2

        class Generator:  # the same endpoint, no cache, no faults: the uninterrupted run
            name = "openai:scripted"

            def chat(self, conversations, max_new_tokens=64, errors="raise"):
                return [qa_pairs({"messages": c}) for c in conversations]

        stored = store.get_jsonl(f"versions/{VERSION}/reflections.jsonl")
        reference, _ = synthesise_reflections(snapshot_of(store).documents, VERSION, Generator(), "llm_json",
                                              config=SynthesisConfig(steps=("fact_extraction",)))
    assert sorted(r["id"] for r in stored) == sorted(r["id"] for r in reference)


def test_an_endpoint_outage_longer_than_the_clients_retries_is_retried_by_dagster_with_backoff(job_run, store):
    tern_calls = {"n": 0}

    def responder(request):  # down for one document through the client's retry and the step's re-ask (4 requests), then up
        if "sodium-ion" in request["messages"][0]["content"]:
            tern_calls["n"] += 1
            if tern_calls["n"] <= 4:
                return {"status": 503, "message": "overloaded"}
        return qa_pairs(request)

    with ScriptedOpenAI(responder) as server:
        result = job_run(["corpus_snapshot", "reflections"], generator=openai_generator(server))
    assert result.success
    events = [(e.step_key, e.event_type_value) for e in result.all_events]
    assert ("reflections", "STEP_UP_FOR_RETRY") in events and ("reflections", "STEP_RESTARTED") in events
    assert {r["source_doc_ids"][0] for r in store.get_jsonl(f"versions/{VERSION}/reflections.jsonl") if r["step"] == "fact_extraction"} == set(DOCS)


def status_sensor(instance, run_id: str, sensor_name: str, event_type: dg.DagsterEventType, resources: dict):
    """Evaluate one of the definitions' run-status sensors on a finished run, as the daemon does for each run it sees."""
    from tests.pipeline_helpers import definitions

    event = instance.all_logs(run_id, of_type=event_type)[-1].dagster_event
    context = dg.build_run_status_sensor_context(sensor_name=sensor_name, dagster_event=event, dagster_instance=instance,
                                                 dagster_run=instance.get_run_by_id(run_id), resources={"object_store": resources["object_store"]})
    return definitions(resources).resolve_sensor_def(sensor_name)(context)


def test_a_failed_version_is_recorded_with_its_step_error_and_retry_until_a_run_succeeds(job_run, store, tiny_base, tmp_path, monkeypatch, capsys):
    from tests.test_pipeline import memo_status

    resources = pipeline_resources(store, tmp_path / "work", tiny_base)
    healthy = {"up": False}
    with ScriptedOpenAI(lambda request: qa_pairs(request) if healthy["up"] else {"status": 500, "message": "overloaded"}) as server:
        failed = job_run(["corpus_snapshot", "reflections"], retries=False, generator=openai_generator(server))
        assert not failed.success
        instance = job_run.instance
        status_sensor(instance, failed.run_id, "failure_sensor", dg.DagsterEventType.RUN_FAILURE, resources)

        record = store.get_json(f"versions/{VERSION}/failure.json")
        assert record["run_id"] == failed.run_id and [s["step"] for s in record["steps"]] == ["reflections"]
        assert "GeneratorUnavailable: the generator endpoint failed after its retries" in record["steps"][0]["error"]
        assert failed.run_id in record["retry"]["ui"] and "dagster job launch" in record["retry"]["cli"] and VERSION in record["retry"]["cli"]
        status = memo_status(store, tmp_path, monkeypatch, capsys)
        assert "failed at reflections" in next(line for line in status.splitlines() if line.startswith(VERSION))
        assert "failed runs (1):" in status and f"{VERSION}  reflections: " in status and "Re-execute > From failure" in status

        healthy["up"] = True
        retried = job_run(["corpus_snapshot", "reflections"], reexecute=failed.run_id, generator=openai_generator(server))
    assert retried.success
    status_sensor(instance, retried.run_id, "recovery_sensor", dg.DagsterEventType.RUN_SUCCESS, resources)
    assert not store.exists(f"versions/{VERSION}/failure.json")
    assert "failed runs" not in memo_status(store, tmp_path, monkeypatch, capsys)


def test_llm_500s_timeouts_and_garbage(job_run, store):
    seen: dict[str, int] = {}

    def responder(request):
        prompt = request["messages"][0]["content"]  # a re-ask carries the document in its first message
        marks = {"tern.md": "sodium-ion", "kesby.txt": "340 people", "heron.html": "solid-state", "suppliers.json": "lithium carbonate"}
        doc = next(name for name, mark in marks.items() if mark in prompt)
        seen[doc] = seen.get(doc, 0) + 1
        if doc == "tern.md" and seen[doc] == 1:
            return {"status": 500}  # retried by the client
        if doc == "kesby.txt" and seen[doc] == 1:
            return {"sleep": 3.5, "content": qa_pairs(request)}  # past the 2 s timeout: retried
        if doc == "heron.html":
            return "Sure! Here are some questions ```not json at all``` {broken"
        return qa_pairs(request)

    with ScriptedOpenAI(responder) as server:
        result = job_run(["corpus_snapshot", "reflections"], generator=openai_generator(server))
    assert result.success
    assert seen["tern.md"] == 2 and seen["kesby.txt"] == 2 and seen["heron.html"] == 2  # garbage: asked again once, then dropped
    metadata = materialization(result, "reflections")
    assert "| unparseable reply | 1 |" in metadata["dropped_by_reason"] and "request failed" not in metadata["dropped_by_reason"]
    rows = store.get_jsonl(f"versions/{VERSION}/reflections.jsonl")
    llm_sources = {r["source_doc_ids"][0] for r in rows if r["step"] == "fact_extraction"}
    assert llm_sources == {"tern.md", "kesby.txt", "suppliers.json"}  # the garbage reply cost one document's pairs, nothing else


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


@contextmanager
def s3_refuses(operation: str, times: int, bucket: str, key_part: str = ""):
    """The next `times` S3 requests of `operation` to `bucket` are answered 503 SlowDown at the client's edge."""
    refused: list[str] = []

    def refuse(request, **_):
        if f"/{bucket}/" in request.url and key_part in request.url and len(refused) < times:
            refused.append(request.url)
            body = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Body(body))
        return None

    boto3.setup_default_session()  # clients the run creates from now on carry the hook
    boto3.DEFAULT_SESSION.events.register(f"before-send.s3.{operation}", refuse, unique_id="memo-test-refuse")
    try:
        yield refused
    finally:
        boto3.DEFAULT_SESSION.events.unregister(f"before-send.s3.{operation}", unique_id="memo-test-refuse")
        boto3.setup_default_session()


def test_s3_refusals_are_retried_and_a_persistent_outage_fails_the_step_without_dropping_documents(job_run, store, tiny_base):
    with s3_refuses("PutObject", 3, store.bucket) as refused:
        result = job_run(["corpus_snapshot"])
    assert result.success and len(refused) == 3  # three refused writes, absorbed by the client's backoff
    assert materialization(result, "corpus_snapshot")["documents"] == len(DOCS)

    # a store that refuses every read of one document (beyond the retries) fails the snapshot; it is not quarantined
    with s3_refuses("GetObject", 10**6, store.bucket, key_part="landing/kesby.txt") as refused:
        outage = job_run(["corpus_snapshot", "reflections"], retries=False, s3_max_attempts=2)
    assert not outage.success and len(refused) >= 2  # every attempt refused, then the step gives up
    assert {e.step_key for e in outage.all_events if e.event_type_value == "STEP_FAILURE"} == {"corpus_snapshot"}
    recovered = job_run(["corpus_snapshot", "reflections"], reexecute=outage.run_id)
    assert recovered.success
    assert materialization(recovered, "corpus_snapshot")["documents"] == len(DOCS)
    assert {d.doc_id for d in snapshot_of(store).documents} == set(DOCS)


def kill_training_after_first_stored_checkpoint(store, killed: list, stop: threading.Event) -> None:
    """SIGKILL this process's training child once a checkpoint has reached the object store, like a pre-emption."""
    while not stop.is_set():
        if [o for o in store.list_objects(f"versions/{VERSION}/checkpoints/") if o.key.endswith("/latest.json")]:
            for child in psutil.Process().children(recursive=True):
                if "memo_pipelines.memory.training" in " ".join(child.cmdline()):
                    child.send_signal(signal.SIGKILL)
                    killed.append(child.pid)
            return
        time.sleep(0.05)


def test_training_killed_by_a_signal_resumes_on_a_fresh_worker_from_the_checkpoint_in_the_object_store(job_run, store, tmp_path):
    assets = ["corpus_snapshot", "reflections", "memory_adapter"]
    killed, stop = [], threading.Event()
    watcher = threading.Thread(target=kill_training_after_first_stored_checkpoint, args=(store, killed, stop))
    watcher.start()
    trainer = {"epochs": 3, "checkpoint_every": 3}  # 15 steps: killed after the first checkpoint, long before the end
    first = job_run(assets, trainer=trainer)
    stop.set()
    watcher.join()
    assert killed and not first.success
    assert {e.step_key for e in first.all_events if e.event_type_value == "STEP_FAILURE"} == {"memory_adapter"}
    assert not store.exists(f"locks/training/{VERSION}.json")  # the failed step released its lease
    stored = [o.key for o in store.list_objects(f"versions/{VERSION}/checkpoints/")]
    assert any(k.endswith("/model.safetensors") for k in stored) and any(k.endswith("/counters.json") for k in stored), stored

    # the re-execution runs on another worker: nothing of the first one's local disk is left
    shutil.rmtree(tmp_path / "work")
    second = job_run(assets, reexecute=first.run_id, trainer=trainer)
    assert second.success and executed_steps(second) == {"memory_adapter"}
    adapter = materialization(second, "memory_adapter")
    assert 3 <= adapter["resumed_from_step"] < adapter["steps"]
    assert not list(store.list_objects(f"versions/{VERSION}/checkpoints/"))  # a finished job leaves no checkpoint behind

    # the same job from scratch, uninterrupted, gives the same weights
    spec = json.loads((tmp_path / "work" / "runs" / VERSION / "adapter" / "train_spec.json").read_text())
    spec.update(checkpoint_dir=None, out_dir=str(tmp_path / "uninterrupted" / "adapter"))
    reference = run_training_subprocess(spec, tmp_path / "uninterrupted", lambda figures: None, lambda line: None)
    assert reference["resumed_from_step"] == 0
    store.client.download_file(store.bucket, f"versions/{VERSION}/adapter/adapter_model.safetensors", str(tmp_path / "resumed.safetensors"))
    resumed, uninterrupted = load_file(str(tmp_path / "resumed.safetensors")), load_file(str(tmp_path / "uninterrupted" / "adapter" / "adapter_model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.allclose(resumed[k], uninterrupted[k], atol=1e-6) for k in resumed)


def test_a_bad_document_of_each_kind_is_quarantined_and_the_good_ones_go_on(store, tiny_base, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    documents = {name: data for name, (data, _) in GOOD_OF_EACH_FORMAT.items()}
    documents["notes.md"] = b"# Tern\n\nTern is the sodium-ion battery cell made by Quillfeather Labs."  # not a duplicate of plain.txt
    documents.update({name: data for name, (data, _) in BAD_OF_EACH_FORMAT.items()})
    documents["oversized.txt"] = b"Kesby. " * 400_000
    for name, data in documents.items():
        store.put_bytes(f"landing/{name}", data)
    objects = [{"key": f"landing/{n}", "etag": "", "size": len(d)} for n, d in documents.items()]
    objects += [{"key": "landing/../outside.txt", "etag": "", "size": 5}, {"key": "landing//etc/passwd.txt", "etag": "", "size": 5}]
    store.put_json(f"versions/{VERSION}/manifest.json", {"version": VERSION, "objects": objects, "deleted": []})
    instance.add_dynamic_partitions("corpus_versions", [VERSION])
    resources = pipeline_resources(store, tmp_path / "work", tiny_base)

    from memo_pipelines.orchestration.definitions import ASSETS

    result = dg.materialize(ASSETS, selection=["corpus_snapshot", "reflections"], partition_key=VERSION, resources=resources,
                            instance=instance, run_config={"ops": {"corpus_snapshot": {"config": {"max_document_bytes": 1_000_000}}}})
    assert result.success
    snapshot = result.asset_materializations_for_node("corpus_snapshot")[0].metadata
    good = set(GOOD_OF_EACH_FORMAT)
    assert snapshot["documents"].value == len(good)
    assert snapshot["formats"].value == {"html": 1, "json": 1, "jsonl": 1, "markdown": 1, "pdf": 1, "text": 1}
    assert snapshot["quarantined"].value == len(BAD_OF_EACH_FORMAT) + 3
    table = snapshot["quarantine"].value
    for name, (_, reason) in BAD_OF_EACH_FORMAT.items():
        assert re.search(rf"\| {re.escape(name)} \| [^|\n]*{re.escape(reason)}", table), (name, reason)
    assert "over the 1000000-byte limit" in table and "'..'" in table and "absolute path" in table
    sources = {doc for row in store.get_jsonl(f"versions/{VERSION}/reflections.jsonl") for doc in row["source_doc_ids"]}
    assert sources and sources <= good

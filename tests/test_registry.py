"""The model registry on a real S3 server: promotion with compare, a rollback stack, and models that load after fetch."""

from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import load_file

from memo_pipelines.storage.registry import ModelRegistry, PromotionRefused, dir_sha256


@pytest.fixture
def registry(store, tmp_path):
    return ModelRegistry(store, tmp_path / "cache")


def test_ensure_base_promotes_the_base_once(registry, tiny_base):
    assert registry.ensure_base("base", tiny_base) == "base"
    assert registry.get("base")["sha256"] == dir_sha256(tiny_base)
    registry.register("m1", tiny_base, {"parent": "base"})
    registry.promote("m1", "v1 passed", expected_current="base")

    assert registry.ensure_base("base", tiny_base) == "m1"  # a later start must not push the base over a promoted model
    pointer = registry.pointer()
    assert pointer["stack"] == ["base", "m1"]
    assert [h["model_id"] for h in pointer["history"]] == ["base", "m1"]


def test_promote_refuses_unregistered_and_stale_candidates(registry, tiny_base):
    registry.ensure_base("base", tiny_base)
    registry.register("m1", tiny_base, {"parent": "base"})
    registry.register("m2", tiny_base, {"parent": "base"})
    registry.promote("m1", "v1 passed", expected_current="base")
    before = registry.pointer()

    with pytest.raises(PromotionRefused, match="not registered"):
        registry.promote("never-registered", "typo")
    with pytest.raises(PromotionRefused, match="promoted model is m1"):
        registry.promote("m2", "trained on the base", expected_current="base")
    assert registry.pointer() == before


def test_rollback_walks_back_the_promotions(registry, tiny_base):
    registry.ensure_base("base", tiny_base)
    for model_id, parent in [("m1", "base"), ("m2", "m1")]:
        registry.register(model_id, tiny_base, {"parent": parent})
        registry.promote(model_id, "passed", expected_current=parent)

    assert registry.rollback() == "m1" and registry.promoted_id() == "m1"
    assert registry.rollback() == "base" and registry.promoted_id() == "base"
    with pytest.raises(PromotionRefused):
        registry.rollback()
    assert registry.promoted_id() == "base"
    assert [h["model_id"] for h in registry.pointer()["history"]] == ["base", "m1", "m2", "m1", "base"]


def test_fetched_model_loads_with_the_registered_weights(registry, tiny_base):
    from transformers import AutoModelForCausalLM

    record = registry.register("m1", tiny_base, {"parent": None})
    local = registry.fetch("m1")
    assert local == registry.cache_dir / "m1"
    assert dir_sha256(local) == record["sha256"]

    model = AutoModelForCausalLM.from_pretrained(local)
    original = {}
    for path in sorted(tiny_base.glob("*.safetensors")):
        original.update(load_file(path))
    loaded = model.state_dict()
    assert original and all(torch.equal(loaded[name], tensor) for name, tensor in original.items())


def test_prune_deletes_only_never_promoted_candidates_beyond_the_newest(registry, tiny_base):
    registry.ensure_base("base", tiny_base)
    for model_id in ["c1", "c2", "p1", "c3", "c4"]:
        registry.register(model_id, tiny_base, {"kind": "candidate"})
    registry.promote("p1", "passed")
    registry.fetch("c1")
    pruned = registry.prune_candidates(keep_latest=2)
    assert pruned == ["c1", "c2"]
    remaining = {m["model_id"] for m in registry.models()}
    assert remaining == {"base", "p1", "c3", "c4"}
    assert not list(registry.store.list_objects("models/c1/"))
    assert not (registry.cache_dir / "c1").exists()
    # the promoted model and its predecessor stay: rollback still works
    assert registry.rollback() == "base"


@contextmanager
def pointer_put_hook(registry, hook):
    """Run hook on every PutObject this registry's S3 client is about to send (an edge of the real client)."""
    registry.store.client.meta.events.register("before-send.s3.PutObject", hook, unique_id="pointer-hook")
    try:
        yield
    finally:
        registry.store.client.meta.events.unregister("before-send.s3.PutObject", unique_id="pointer-hook")


def test_a_failed_pointer_write_leaves_the_old_pointer_whole(registry, tiny_base):
    registry.ensure_base("base", tiny_base)
    registry.register("m1", tiny_base, {"parent": "base"})
    before = registry.pointer()

    def crash(request, **_):  # the server never gets the write: like a crash or an outage at the moment of promotion
        if request.url.endswith("/registry/promoted.json") and request.method == "PUT":
            raise ConnectionError("injected: connection lost before the pointer write")

    with pointer_put_hook(registry, crash), pytest.raises(Exception, match="injected"):
        registry.promote("m1", "v1 passed", expected_current="base")
    assert registry.pointer() == before and registry.promoted_id() == "base"
    registry.promote("m1", "v1 passed, retried", expected_current="base")
    assert registry.promoted_id() == "m1"


def test_a_promotion_that_races_another_is_refused_and_the_winner_stays(registry, store, tiny_base, tmp_path):
    registry.ensure_base("base", tiny_base)
    for model_id in ("m1", "m2"):
        registry.register(model_id, tiny_base, {"parent": "base"})
    rival = ModelRegistry(store, tmp_path / "rival-cache")
    raced = []

    def rival_promotes_first(request, **_):  # between this promotion's read of the pointer and its write
        if request.url.endswith("/registry/promoted.json") and request.method == "PUT" and not raced:
            raced.append(True)
            rival.promote("m2", "rival run", expected_current="base")

    with pointer_put_hook(registry, rival_promotes_first), pytest.raises(PromotionRefused, match="pointer moved"):
        registry.promote("m1", "v1 passed", expected_current="base")
    assert raced and registry.promoted_id() == "m2"
    assert [h["model_id"] for h in registry.pointer()["history"]] == ["base", "m2"]


def test_a_training_lease_blocks_a_second_holder_until_released_or_expired(store):
    from memo_pipelines.storage.lease import Lease, LeaseHeld

    first = Lease(store, "locks/training/v000001.json", "run-a", ttl_s=60).acquire()
    with pytest.raises(LeaseHeld, match="held by run-a"):
        Lease(store, "locks/training/v000001.json", "run-b", ttl_s=60).acquire()
    Lease(store, "locks/training/v000002.json", "run-b", ttl_s=60).acquire()  # another version is free
    first.release()
    assert not store.exists("locks/training/v000001.json")

    stale = Lease(store, "locks/training/v000003.json", "dead-run", ttl_s=-1).acquire()  # its holder died: expired at once
    taker = Lease(store, "locks/training/v000003.json", "run-c", ttl_s=60).acquire()
    with pytest.raises(LeaseHeld, match="taken over"):
        stale.renew()
    taker.renew()
    assert store.get_json("locks/training/v000003.json")["owner"] == "run-c"


def test_a_versions_outcome_is_read_from_its_evaluation_and_the_promoted_stack(registry, store, tiny_base):
    # what `memo wait` (and make demo) stop on: a failed gate, or the version's model in the promoted stack
    from memo_pipelines.apps.status import version_outcome
    from memo_pipelines.storage.layout import version_key

    registry.ensure_base("base", tiny_base)
    assert version_outcome(store, registry, "v000001") is None  # no evaluation yet
    store.put_json(version_key("v000001", "evaluation.json"), {"gates": [{"name": "weights_finite", "passed": True},
                                                                         {"name": "abstention", "passed": False}]})
    assert version_outcome(store, registry, "v000001") == ("rejected", ["abstention"])
    store.put_json(version_key("v000002", "evaluation.json"), {"gates": [{"name": "abstention", "passed": True}]})
    assert version_outcome(store, registry, "v000002") is None  # passed, promotion not done yet
    registry.register("v000002-abc", tiny_base, {"kind": "candidate", "version": "v000002", "parent": "base"})
    registry.promote("v000002-abc", "v000002 passed its gates", expected_current="base")
    assert version_outcome(store, registry, "v000002") == ("promoted", [])


def test_a_lease_released_as_another_run_takes_it_over_is_left_to_that_run(store):
    # the holder's lease expired; a rival takes it over between the holder's last look at it and its delete
    from memo_pipelines.storage.lease import Lease
    from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client
    from tests.conftest import CREDENTIALS

    key = "locks/training/v000001.json"
    rival_store = ObjectStore(make_s3_client(store.client.meta.endpoint_url, *CREDENTIALS.values()), store.bucket)
    holder = Lease(store, key, "run-a", ttl_s=-1).acquire()
    taken = []

    def rival_takes_over(request, **_):
        if request.method == "DELETE" and request.url.split("?")[0].endswith(key) and not taken:
            taken.append(Lease(rival_store, key, "run-b", ttl_s=60).acquire())

    store.client.meta.events.register("before-send.s3.DeleteObject", rival_takes_over, unique_id="lease-rival")
    try:
        holder.release()
    finally:
        store.client.meta.events.unregister("before-send.s3.DeleteObject", unique_id="lease-rival")
    assert taken and store.get_json(key)["owner"] == "run-b"
    taken[0].renew()  # the rival still holds it
    taken[0].release()
    assert not store.exists(key)


def test_prune_keeps_a_candidate_its_version_has_not_decided_on_yet(registry, store, tiny_base):
    from memo_pipelines.storage.layout import version_key

    registry.ensure_base("base", tiny_base)
    # v000001's candidate waits for its evaluation; v000002's passed and waits for its promotion step; v000003's was
    # rejected; two newer candidates of no version follow
    for model_id, version in [("v000001-a", "v000001"), ("v000002-b", "v000002"), ("v000003-c", "v000003"), ("c4", None), ("c5", None)]:
        registry.register(model_id, tiny_base, {"kind": "candidate", "version": version, "parent": "base"})
        if version:
            store.put_json(version_key(version, "candidate.json"), {"model_id": model_id, "parent": "base"})
    store.put_json(version_key("v000002", "evaluation.json"), {"candidate": {"model_id": "v000002-b"}, "gates": [{"name": "recall", "passed": True}]})
    store.put_json(version_key("v000003", "evaluation.json"), {"candidate": {"model_id": "v000003-c"}, "gates": [{"name": "recall", "passed": False}]})

    assert registry.prune_candidates(keep_latest=1) == ["v000003-c", "c4"]
    assert registry.get("v000001-a") and registry.get("v000002-b")


def test_a_lease_held_through_work_that_reports_no_progress_stays_held(store):
    # fetching models, generating the general reference, uploading, merge's jobs one after another: no training
    # progress renews the lease then, the heartbeat does
    import time

    from memo_pipelines.storage.lease import Lease, LeaseHeld

    key = "locks/training/v000001.json"
    with Lease(store, key, "run-a", ttl_s=1.5) as lease, lease.heartbeat(0.3):
        time.sleep(3)  # twice the lease's ttl without a renew() from the work itself
        with pytest.raises(LeaseHeld, match="held by run-a"):
            Lease(store, key, "run-b", ttl_s=60).acquire()
    assert not store.exists(key)

    # a heartbeat that finds its lease taken over stops the holder at its next renewal and at the end of the block
    with pytest.raises(LeaseHeld, match="taken over"):
        with Lease(store, key, "run-a", ttl_s=60) as lease, lease.heartbeat(0.3):
            store.put_json(key, {"owner": "run-b", "acquired_at": time.time(), "expires_at": time.time() + 60})
            time.sleep(1)
            with pytest.raises(LeaseHeld, match="taken over"):
                lease.renew()
    assert store.get_json(key)["owner"] == "run-b"

"""What it costs a run to learn which versions have which records, as the history grows: one read of the versions
index (`storage/version_index.py`) beside a listing of every object under `versions/` (what every run did before the
index), on the same bucket of a real SeaweedFS server, in one run.

Each synthetic version holds what a real one does: 12 records (manifest, snapshot, its summary, reflections and their
checks and stats, probes, lineage, candidate, evaluation, promotion outcome), 3 archived raw documents and a 2-file
adapter, 17 objects; only the records enter the index. Figures: milliseconds of one lookup each way, and their ratio;
both must return the same versions and records.

    .venv/bin/python benchmarks/version_index.py [--sizes 50,200,1000] [--repeats 5] [--quick] [--json FILE]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memo_pipelines.storage import layout, version_index  # noqa: E402
from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client  # noqa: E402
from memo_pipelines.storage.seaweed import SeaweedServer, free_s3_port  # noqa: E402

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "memo-bench", "AWS_SECRET_ACCESS_KEY": "memo-bench-secret"}
RECORDS = ["manifest.json", "snapshot.json", layout.SNAPSHOT_SUMMARY, "reflections.jsonl", layout.REFLECTION_CHECKS, "reflections_stats.json",
           "probes.jsonl", "probes_report.json", "adapter_lineage.json", "candidate.json", "evaluation.json", layout.PROMOTION]
OTHERS = ["raw/a.md", "raw/b.md", "raw/c.md", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"]


def grow(store: ObjectStore, first: int, last: int) -> None:
    """Versions first..last: their objects straight to the bucket, then their records into the index in one write (what
    the store's own writes would have added one by one)."""
    keys = [layout.version_key(f"v{n:06d}", name) for n in range(first, last + 1) for name in RECORDS + OTHERS]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: store.client.put_object(Bucket=store.bucket, Key=key, Body=b"{}"), keys))
    index, etag = store.get_json_versioned(layout.VERSION_INDEX, {"records": {}})
    index["records"] |= {f"v{n:06d}": sorted(RECORDS) for n in range(first, last + 1)}
    store.put_bytes_if(layout.VERSION_INDEX, json.dumps(index).encode(), etag)


def timed_ms(lookup, repeats: int) -> tuple[float, dict]:
    times, found = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        found = lookup()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,200,1000", help="versions in the history, comma-separated, increasing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="sizes 20,100 and 3 repeats")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [20, 100] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeats = 3 if args.quick else args.repeats
    work = Path(tempfile.mkdtemp(prefix="memo-version-index-"))
    server = SeaweedServer(work / "seaweed", free_s3_port(), env=CREDENTIALS)
    server.start()
    results = []
    try:
        client = make_s3_client(server.endpoint_url, CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        store = ObjectStore(client, f"bench-index-{uuid.uuid4().hex[:6]}")
        store.ensure_bucket()
        print(f"{'versions':>9} {'objects':>8} {'index ms':>9} {'listing ms':>11} {'listing/index':>14}  same")
        done = 0
        for size in sizes:
            grow(store, done + 1, size)
            done = size
            indexed, from_index = timed_ms(lambda: version_index.read(store), repeats)
            listing, from_listing = timed_ms(lambda: version_index.listed(store), repeats)
            result = {"versions": size, "objects": size * (len(RECORDS) + len(OTHERS)), "index_ms": indexed, "listing_ms": listing,
                      "listing_over_index": round(listing / indexed, 1), "same": from_index == from_listing}
            results.append(result)
            print(f"{size:>9} {result['objects']:>8} {indexed:>9} {listing:>11} {result['listing_over_index']:>14}  {result['same']}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "version_index", "records_per_version": len(RECORDS), "objects_per_version": len(RECORDS) + len(OTHERS),
                                         "repeats": repeats, "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                                                                          "cpus": os.cpu_count()},
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()

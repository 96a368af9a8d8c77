"""S3 object store: the one place the library touches buckets (SeaweedFS locally, any S3 in production)."""

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, Iterator

from memo_pipelines.storage import layout, version_index


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str
    size: int
    last_modified: str | None = None  # ISO 8601, UTC, as the listing said; one-second resolution, so never an identity


class WriteConflict(RuntimeError):
    """A conditional write lost: the object changed (or appeared) since it was read."""


NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


class StoreError(RuntimeError):
    """A store call failed; the message names the operation, the object and what the server said. The botocore error
    is the __cause__, and its `response` stays readable here, so code that asks for the S3 error code keeps working."""

    def __init__(self, operation: str, bucket: str, key: str, error: Exception):
        self.operation, self.bucket, self.key = operation, bucket, key
        self.response = getattr(error, "response", None) or {}
        self.code = str(self.response.get("Error", {}).get("Code") or type(error).__name__)
        message = self.response.get("Error", {}).get("Message") or str(error)
        super().__init__(f"{operation} s3://{bucket}/{key}: {self.code} {message}")

    @property
    def not_found(self) -> bool:
        return self.code in NOT_FOUND


def make_s3_client(endpoint_url: str | None, access_key: str | None, secret_key: str | None, region: str = "us-east-1", max_attempts: int = 8,
                   connect_timeout: float = 10, read_timeout: float = 120):
    """The project's one boto3 S3 client: path-style addressing (SeaweedFS, MinIO and AWS alike), and retries of
    throttling, 5xx and connection errors with exponential backoff and jitter (botocore's standard mode: up to
    max_attempts tries per call, waits of random(0, 2**attempt) s capped at 20 s). Against a custom endpoint with no
    credentials (a SeaweedFS started without auth) requests go unsigned; with AWS, boto3's own credential chain applies."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    unsigned = {"signature_version": UNSIGNED} if endpoint_url and not access_key else {}
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": max_attempts},
                      connect_timeout=connect_timeout, read_timeout=read_timeout, **unsigned),
    )


class ObjectStore:
    """A bucket seen through boto3. Keys are plain strings; JSON helpers for small records. Every write or delete of a
    version's record through it also updates the versions index (storage/version_index.py)."""

    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket

    @contextmanager
    def _call(self, operation: str, key: str = ""):
        """Turn botocore and boto3 errors of one call into a StoreError naming the operation and the object."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError, Boto3Error) as error:
            raise StoreError(operation, self.bucket, key, error) from error

    def ensure_bucket(self) -> None:
        try:
            with self._call("head_bucket"):
                self.client.head_bucket(Bucket=self.bucket)
        except StoreError as error:
            if not error.not_found:  # a bucket we may not read is not a bucket to create
                raise
            with self._call("create_bucket"):
                self.client.create_bucket(Bucket=self.bucket)

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under prefix, across as many pages as the server returns."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._call("list_objects", prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    modified = item.get("LastModified")
                    yield StoredObject(item["Key"], item["ETag"].strip('"'), int(item["Size"]),
                                       modified.astimezone(timezone.utc).isoformat() if modified else None)

    def put_bytes(self, key: str, data: bytes) -> str:
        with self._call("put_object", key):
            etag = self.client.put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"].strip('"')
        self._index(key, present=True)
        return etag

    def _index(self, key: str, present: bool) -> None:
        """Keep the versions index in step with a version's records (storage/version_index.py)."""
        if found := layout.version_of_record(key):
            version_index.note(self, *found, present=present)

    def put_bytes_if(self, key: str, data: bytes, etag: str | None) -> str:
        """Put only if the object still has `etag` (None: only if it does not exist yet); WriteConflict otherwise."""
        condition = {"IfMatch": f'"{etag}"'} if etag else {"IfNoneMatch": "*"}
        try:
            with self._call("conditional put_object", key):
                written = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **condition)["ETag"].strip('"')
        except StoreError as error:
            if error.code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise WriteConflict(f"s3://{self.bucket}/{key} changed since it was read") from None
            raise
        self._index(key, present=True)
        return written

    def get_json_versioned(self, key: str, default: Any = None) -> tuple[Any, str | None]:
        """(value, etag) of a JSON object, or (default, None) when it does not exist: the read half of a compare-and-set."""
        try:
            data, etag = self.get_object(key)
        except StoreError as error:
            if error.not_found:
                return default, None
            raise
        return json.loads(data), etag

    def get_bytes(self, key: str) -> bytes:
        return self.get_object(key)[0]

    def get_object(self, key: str) -> tuple[bytes, str]:
        with self._call("get_object", key):
            reply = self.client.get_object(Bucket=self.bucket, Key=key)
            return reply["Body"].read(), reply["ETag"].strip('"')

    def head_etag(self, key: str) -> str | None:
        """The object's ETag, or None when there is no such object; any other refusal (403, throttling) raises."""
        try:
            with self._call("head_object", key):
                return self.client.head_object(Bucket=self.bucket, Key=key)["ETag"].strip('"')
        except StoreError as error:
            if error.not_found:
                return None
            raise

    def etag(self, key: str) -> str:
        with self._call("head_object", key):
            return self.client.head_object(Bucket=self.bucket, Key=key)["ETag"].strip('"')

    def exists(self, key: str) -> bool:
        return self.head_etag(key) is not None

    def put_json(self, key: str, value: Any) -> str:
        return self.put_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode())

    def get_json(self, key: str, default: Any = None) -> Any:
        return self.get_json_versioned(key, default)[0]

    def put_jsonl(self, key: str, rows: list[dict]) -> str:
        return self.put_bytes(key, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())

    def get_jsonl(self, key: str) -> list[dict]:
        return [json.loads(line) for line in self.get_bytes(key).decode().splitlines() if line.strip()]

    def delete(self, key: str) -> None:
        with self._call("delete_object", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)
        self._index(key, present=False)

    def delete_if(self, key: str, etag: str) -> bool:
        """Delete only if the object still has `etag`; False, and nothing deleted, when it changed or is gone. A store
        without conditional deletes gets a compare, then a delete (a narrow window instead of none)."""
        try:
            with self._call("conditional delete_object", key):
                self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')
        except StoreError as error:
            if error.not_found or error.code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            if error.code not in ("NotImplemented", "501"):
                raise
            if self.head_etag(key) != etag:
                return False
            self.delete(key)
            return True
        self._index(key, present=False)
        return True

    def upload_dir(self, local_dir: Path, prefix: str) -> list[str]:
        keys = []
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                key = f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}"
                with self._call("upload_file", key):
                    self.client.upload_file(str(path), self.bucket, key)
                self._index(key, present=True)
                keys.append(key)
        return keys

    def download_dir(self, prefix: str, local_dir: Path) -> Path:
        """Download prefix into local_dir atomically: a half-finished download never looks complete. A key whose path
        below the prefix would land outside local_dir (`..`, absolute) refuses the whole download (UnsafeKey)."""
        local_dir = Path(local_dir)
        if local_dir.exists():
            return local_dir
        partial = local_dir.with_name(local_dir.name + f".partial-{os.getpid()}")
        prefix = prefix.rstrip("/") + "/"
        # every key is checked before anything is written
        targets = [(obj.key, inside(partial, obj.key[len(prefix):])) for obj in self.list_objects(prefix) if not obj.key.endswith("/")]
        if not targets:
            raise FileNotFoundError(f"nothing stored under s3://{self.bucket}/{prefix}")
        for key, target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._call("download_file", key):
                self.client.download_file(self.bucket, key, str(target))
        local_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, local_dir)
        return local_dir


class UnsafeKey(ValueError):
    """An object key that would be written outside the folder it is downloaded into."""


def inside(root: Path, relative: str) -> Path:
    """root/relative for a key's path below its prefix, refused when it is empty, absolute, has a `..` part or a
    backslash, or resolves outside root (a symlink on the way)."""
    parts = relative.split("/")
    if not relative or relative.startswith("/") or ".." in parts or "\\" in relative or "\x00" in relative:
        raise UnsafeKey(f"refusing to download {relative!r}: it would land outside {root}")
    target = root / relative
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeKey(f"refusing to download {relative!r}: it resolves outside {root}")
    return target

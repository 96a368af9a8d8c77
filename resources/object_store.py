from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client


class ObjectStoreResource(dg.ConfigurableResource):
    """An S3 bucket: SeaweedFS on loopback by default, AWS S3 by leaving endpoint_url empty."""

    bucket: str = "memo"
    endpoint_url: Optional[str] = None
    access_key_id: Optional[str] = None
    secret_access_key: Optional[str] = None
    region: str = "us-east-1"
    max_attempts: int = 8  # per S3 call, with exponential backoff (botocore standard retry mode)
    _store: Optional[ObjectStore] = PrivateAttr(default=None)

    def store(self) -> ObjectStore:
        if self._store is None:
            client = make_s3_client(self.endpoint_url, self.access_key_id, self.secret_access_key, self.region, self.max_attempts)
            self._store = ObjectStore(client, self.bucket)
            self._store.ensure_bucket()
        return self._store

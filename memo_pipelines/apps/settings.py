"""Where the CLI finds things: every value from the environment, with local-demo defaults under ./.memo."""

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DEFAULT_S3_PORT = 8333


@dataclass(frozen=True)
class Settings:
    home: Path
    endpoint_url: str | None
    bucket: str
    access_key_id: str | None
    secret_access_key: str | None
    work_dir: Path

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(os.environ.get("MEMO_HOME") or Path.cwd() / ".memo").resolve()
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        credentials = home / "credentials.json"
        if not access and credentials.exists():
            stored = json.loads(credentials.read_text())
            access, secret = stored["AWS_ACCESS_KEY_ID"], stored["AWS_SECRET_ACCESS_KEY"]
        return cls(
            home=home,
            endpoint_url=os.environ.get("MEMO_S3_ENDPOINT", f"http://127.0.0.1:{DEFAULT_S3_PORT}") or None,
            bucket=os.environ.get("MEMO_BUCKET", "memo"),
            access_key_id=access,
            secret_access_key=secret,
            work_dir=Path(os.environ.get("MEMO_WORK_DIR") or home / "work"),
        )

    def store(self):
        from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client

        store = ObjectStore(make_s3_client(self.endpoint_url, self.access_key_id, self.secret_access_key), self.bucket)
        store.ensure_bucket()
        return store

    def registry(self):
        from memo_pipelines.storage.registry import ModelRegistry

        return ModelRegistry(self.store(), self.work_dir / "models")


def local_credentials(home: Path) -> dict[str, str]:
    """Credentials of the local SeaweedFS server: generated once, kept in the ignored state folder, never printed."""
    path = home / "credentials.json"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"AWS_ACCESS_KEY_ID": "memo-" + secrets.token_hex(4), "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24)}))
        path.chmod(0o600)
    return json.loads(path.read_text())

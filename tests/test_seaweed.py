"""The local SeaweedFS manager: S3 works, stays on loopback, and stops cleanly."""
import socket

import psutil
import pytest

from memo_pipelines.storage.objectstore import make_s3_client as s3_client
from memo_pipelines.storage.seaweed import SeaweedServer, free_s3_port

KEY, SECRET = "test-access-key", "test-secret-key"


@pytest.fixture
def server(tmp_path):
    srv = SeaweedServer(tmp_path / "weed", free_s3_port(),
                        env={"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET})
    with srv:
        yield srv


def _listening(pid: int) -> set[tuple[str, int]]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {c.laddr[:2] for p in procs for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def test_s3_roundtrip_and_loopback_only(server):
    s3 = s3_client(server.endpoint_url, KEY, SECRET)
    s3.create_bucket(Bucket="docs")
    s3.put_object(Bucket="docs", Key="a/b.txt", Body=b"hello memo")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="docs")["Contents"]] == ["a/b.txt"]
    assert s3.get_object(Bucket="docs", Key="a/b.txt")["Body"].read() == b"hello memo"

    listening = _listening(server.pid)
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    # exactly the derived ports: no default 9333/8888/9340/23646/... listener
    assert {port for _, port in listening} == set(server.ports.values())


def test_stop_frees_port(server):
    pid_file, port = server.pid_path, server.s3_port
    assert pid_file.exists()
    server.stop()
    assert not server.is_running() and not pid_file.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with socket.socket() as s:  # bindable again (REUSEADDR, as Go does, skips TIME_WAIT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))

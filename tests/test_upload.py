"""`memo upload` against the real bucket: nested folders keep their paths as keys (and as document ids through the
snapshot), a key named twice in one call uploads nothing, and rewriting existing documents is said out loud."""

import pytest

from memo_pipelines.apps import cli
from memo_pipelines.corpus.landing import Cursor, diff_landing, manifest
from memo_pipelines.storage.workspace import Workspace
from memo_pipelines.corpus.reading import snapshot_corpus
from memo_pipelines.storage import layout
from memo_pipelines.storage.registry import ModelRegistry
from tests.conftest import CREDENTIALS, SAMPLE_DIR


@pytest.fixture
def bucket(store, tmp_path, monkeypatch):
    """The CLI pointed at this test's bucket through the environment, as a user's shell would."""
    monkeypatch.setenv("MEMO_S3_ENDPOINT", store.client.meta.endpoint_url)
    monkeypatch.setenv("MEMO_BUCKET", store.bucket)
    monkeypatch.setenv("MEMO_HOME", str(tmp_path / "memo-home"))
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return store


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def landed(store) -> dict[str, bytes]:
    return {o.key: store.get_bytes(o.key) for o in store.list_objects(layout.LANDING_PREFIX)}


def test_nested_folders_keep_their_paths_as_keys_and_document_ids(bucket, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write(corpus / "kesby" / "report.txt", "The Kesby plant employs 340 people.")
    write(corpus / "lorne" / "report.txt", "The Lorne plant employs 120 people.")
    assert cli.main(["upload", str(corpus)]) == 0
    assert landed(bucket) == {"landing/kesby/report.txt": b"The Kesby plant employs 340 people.",
                              "landing/lorne/report.txt": b"The Lorne plant employs 120 people."}
    assert "2 new, 0 rewritten, 0 unchanged" in capsys.readouterr().out

    # the pipeline's first stage takes the nested keys as two documents and archives both for backfills
    diff = diff_landing(list(bucket.list_objects(layout.LANDING_PREFIX)), Cursor())
    bucket.put_json(layout.version_key("v000001", "manifest.json"), manifest("v000001", diff))
    ws = Workspace(bucket, ModelRegistry(bucket, tmp_path / "models"), tmp_path / "work")
    snapshot = snapshot_corpus(ws, "v000001", max_bytes=1_000_000)
    assert sorted(d.doc_id for d in snapshot.documents) == ["kesby/report.txt", "lorne/report.txt"] and not snapshot.quarantine
    assert bucket.get_bytes(layout.archived_document_key("v000001", "lorne/report.txt")) == b"The Lorne plant employs 120 people."


def test_two_files_for_one_key_upload_nothing(bucket, tmp_path, capsys):
    first = write(tmp_path / "kesby" / "report.txt", "The Kesby plant employs 340 people.")
    second = write(tmp_path / "lorne" / "report.txt", "The Lorne plant employs 120 people.")
    other = write(tmp_path / "about.md", "Quillfeather Labs was founded in 1987.")
    assert cli.main(["upload", str(other), str(first), str(second)]) == 2
    err = capsys.readouterr().err
    assert "landing/report.txt" in err and str(first) in err and str(second) in err and "nothing uploaded" in err
    assert landed(bucket) == {}


def test_a_path_that_does_not_exist_uploads_nothing(bucket, tmp_path, capsys):
    real = write(tmp_path / "about.md", "Quillfeather Labs was founded in 1987.")
    assert cli.main(["upload", str(real), str(tmp_path / "typo.md")]) == 2
    assert "typo.md" in capsys.readouterr().err and landed(bucket) == {}


def test_rewritten_keys_are_named_and_unchanged_ones_left_alone(bucket, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write(corpus / "kesby.txt", "The Kesby plant employs 340 people.")
    write(corpus / "about.md", "Quillfeather Labs was founded in 1987.")
    assert cli.main(["upload", str(corpus)]) == 0
    etag_before = bucket.etag("landing/about.md")
    capsys.readouterr()

    write(corpus / "kesby.txt", "The Kesby plant employs 360 people.")
    write(corpus / "lorne.txt", "The Lorne plant employs 120 people.")
    assert cli.main(["upload", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "1 new, 1 rewritten, 1 unchanged" in out
    assert "rewrote 1 existing key(s), their earlier text is replaced: landing/kesby.txt" in out
    assert bucket.get_bytes("landing/kesby.txt") == b"The Kesby plant employs 360 people."
    assert bucket.etag("landing/about.md") == etag_before  # the same bytes were not sent again


def test_many_rewrites_are_counted_with_the_first_few_named(bucket, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    for n in range(8):
        write(corpus / f"doc{n}.txt", f"Document {n}, first text.")
    cli.main(["upload", str(corpus)])
    for n in range(8):
        write(corpus / f"doc{n}.txt", f"Document {n}, second text.")
    capsys.readouterr()
    assert cli.main(["upload", str(corpus)]) == 0
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("rewrote 8")]
    assert summary == ["rewrote 8 existing key(s), their earlier text is replaced: "
                       "landing/doc0.txt, landing/doc1.txt, landing/doc2.txt, landing/doc3.txt, landing/doc4.txt and 3 more"]


def test_the_sample_corpus_lands_as_the_demo_expects(bucket, capsys):
    assert cli.main(["upload", str(SAMPLE_DIR)]) == 0
    assert sorted(landed(bucket)) == sorted(f"landing/{p.name}" for p in SAMPLE_DIR.iterdir() if p.is_file())

"""`memo evals`: a person's evaluation set goes where the evaluation stage reads it (evals/ in the real bucket), the
sample company's hand-written set among them; a set with a bad line is refused whole."""

from pathlib import Path

from memo_pipelines.apps import cli
from memo_pipelines.evaluation.user_evals import load_user_evals
from tests.test_upload import bucket, write  # noqa: F401  (the fixture points the CLI at this test's bucket)

STAFF_SET = Path(__file__).resolve().parents[1] / "memo_pipelines" / "sample_evals" / "staff_questions.jsonl"


def test_the_sample_companys_questions_are_read_by_the_evaluation_stage(bucket, capsys):  # noqa: F811
    assert cli.main(["evals", str(STAFF_SET)]) == 0
    sets, problems = load_user_evals(bucket, limit=100)
    assert not problems and list(sets) == ["staff_questions.jsonl"]
    rows = sets["staff_questions.jsonl"]
    assert len(rows) >= 20 and all(r["question"].endswith("?") and r["answers"] for r in rows)
    assert f"{len(rows)} questions" in capsys.readouterr().out


def test_a_set_with_a_bad_line_is_refused_whole(bucket, tmp_path, capsys):  # noqa: F811
    good = write(tmp_path / "good.jsonl", '{"question": "Who runs Kesby?", "answer": "Rafael Ondo"}\n')
    bad = write(tmp_path / "bad.jsonl", '{"question": "Who runs Kesby?", "answer": "Rafael Ondo"}\n{"question": "no answer"}\n')
    assert cli.main(["evals", str(good), str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert load_user_evals(bucket, limit=100) == ({}, {})  # nothing uploaded, not even the good set

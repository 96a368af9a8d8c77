"""`memo env`: the exports a shell evaluates for the local services, without the S3 secret on the screen."""

import json
import subprocess

from memo_pipelines.apps import cli


def secret_of(home) -> str:
    return json.loads((home / "credentials.json").read_text())["AWS_SECRET_ACCESS_KEY"]


def test_env_masks_the_secret_key_and_still_exports_it_when_evaluated(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEMO_HOME", str(tmp_path))
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    secret = secret_of(tmp_path)
    assert secret not in out and "AWS_SECRET_ACCESS_KEY" in out and "masked" in out
    # `eval "$(memo env)"` (scripts/demo.sh) still gets the real value, read from the credentials file by the shell
    shell = subprocess.run(["bash", "-c", 'eval "$1" && printf %s "$AWS_SECRET_ACCESS_KEY:$MEMO_HOME"', "-", out],
                           capture_output=True, text=True, check=True)
    assert shell.stdout == f"{secret}:{tmp_path}"


def test_env_prints_the_secret_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEMO_HOME", str(tmp_path))
    assert cli.main(["env", "--show-secrets"]) == 0
    assert f"export AWS_SECRET_ACCESS_KEY={secret_of(tmp_path)}" in capsys.readouterr().out

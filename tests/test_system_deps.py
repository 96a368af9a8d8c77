"""scripts/system-deps.sh decides whether CI may go green without the UI and PostgreSQL tests: a failed install, or
packages missing where MEMO_REQUIRE_SYSTEM_DEPS=1, must fail it. Run on a PATH of stand-ins for `id` and `apt-get`
(the edge: who we are, and what the package manager answers), so no package is installed by the test."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "system-deps.sh"


def run_script(tmp_path, uid: int, apt_rc: int, **env) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\necho \"apt-get $*\" >> {tmp_path / 'apt.log'}\nexit {apt_rc}\n")
    for tool in ("id", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    for tool in ("chmod", "rm"):  # the script's own cleanup of policy-rc.d, where it creates one
        os.symlink(shutil.which(tool), bin_dir / tool)
    # chromium is never on this PATH, so there is always something to install
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env={"PATH": str(bin_dir), **env}, capture_output=True, text=True, timeout=60)


def test_a_failed_install_as_root_fails_the_script(tmp_path):
    done = run_script(tmp_path, uid=0, apt_rc=100)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "could not install" in done.stderr and "chromium" in done.stderr
    assert (tmp_path / "apt.log").read_text().startswith("apt-get update")  # it did try, and stopped at the first failure


def test_an_install_that_leaves_a_package_missing_fails_the_script(tmp_path):
    done = run_script(tmp_path, uid=0, apt_rc=0)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "still cannot be found" in done.stderr


@pytest.mark.parametrize("required, rc", [({}, 0), ({"MEMO_REQUIRE_SYSTEM_DEPS": "1"}, 1)])
def test_without_root_it_skips_unless_the_packages_are_required(tmp_path, required, rc):
    done = run_script(tmp_path, uid=1000, apt_rc=0, **required)
    assert done.returncode == rc, done.stdout + done.stderr
    assert not (tmp_path / "apt.log").exists()  # nothing was attempted
    assert ("will skip" in done.stdout) == (rc == 0)

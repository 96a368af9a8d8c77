"""Child processes the project starts (training, SeaweedFS): stopped as a whole process group, politely first."""

import os
import signal
import time
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # an unreaped zombie (e.g. reparented to a non-reaping pid 1) counts as dead
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop_process_group(pid: int, grace_s: float = 10.0, child=None) -> None:
    """SIGTERM the process group led by pid, then SIGKILL after grace_s. With `child` (our own Popen) it is reaped."""
    for sig, deadline in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if (child.poll() is not None) if child is not None else not pid_alive(pid):
                return
            time.sleep(0.1)
    if child is not None:
        child.poll()

"""Install a server a test needs by running its setup script (Debian packages, on demand).

One step shared by the Prometheus and Redis setups: run ``bash SCRIPT``, whose last stdout
line is the directory holding the binaries; any failure becomes ``error`` with the
script's own last words, so the calling test can skip with a reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

INSTALL_TIMEOUT_S = 900


def run_setup_script(script: Path, *, error: type[Exception], timeout_s: float = INSTALL_TIMEOUT_S) -> Path:
    """The binaries' directory that ``script`` prints last; ``error`` when it cannot install."""
    try:
        done = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise error(f"{script} did not finish in {timeout_s:g}s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise error(f"{script} failed (exit {done.returncode}): {reason}")
    return Path(done.stdout.strip().splitlines()[-1])

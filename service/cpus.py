"""How many CPUs this process may use: its affinity, capped by its cgroup's CPU quota.

``os.cpu_count()`` counts the host's cores; a container limited to two CPUs on a
64-core host (Kubernetes ``resources.limits.cpu``, ``docker --cpus``) would then size
ONNX Runtime's thread pools for 64 and spend its quota switching threads. The affinity
mask covers ``taskset`` and cpusets; the quota is cgroup v2's ``cpu.max`` or cgroup v1's
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, read where a container sees its own
cgroup (``/sys/fs/cgroup``). A Kubernetes pod without a CPU limit has no quota: set
``FAIRGATE_INTRA_OP_THREADS`` from its CPU request (deploy/kubernetes/fairgate.yaml does).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["CGROUP_ROOT", "available_cpus"]

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str, period: str, source: Path) -> float | None:
    try:
        cpus = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        logger.warning("cannot read the CPU quota %r / %r in %s; ignoring it", quota, period, source)
        return None
    return cpus if cpus > 0 else None


def _quota(root: Path) -> float | None:
    """CPUs of the cgroup's quota: v2 ``cpu.max`` ("max 100000": none), else v1 (-1: none)."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else _ratio(quota, period or "100000", root / "cpu.max")
    v1_quota, v1_period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if v1_quota is None or v1_period is None or v1_quota == "-1":
        return None
    return _ratio(v1_quota, v1_period, root / "cpu")


def available_cpus(*, affinity: Callable[[], int] = _affinity, cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process can keep busy: the affinity mask, at most the quota rounded up, at least 1."""
    cpus = affinity()
    quota = _quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)

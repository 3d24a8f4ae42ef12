"""How many CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota.

``os.cpu_count()`` counts the host's cores; a container limited to two CPUs on a
64-core host (Kubernetes ``resources.limits.cpu``, ``docker --cpus``) would then size
ONNX Runtime's thread pools for 64 and spend its quota switching threads. The affinity
mask covers ``taskset`` and cpusets; ``cpu.max`` covers quotas.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["CGROUP_CPU_MAX", "available_cpus"]

logger = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _quota(cpu_max: Path) -> float | None:
    """CPUs of the cgroup v2 quota (``"max 100000"`` or a missing file: none)."""
    try:
        quota, _, period = cpu_max.read_text(encoding="ascii").strip().partition(" ")
    except OSError:
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period or "100000")
    except ValueError:
        logger.warning("cannot read the CPU quota %r in %s; ignoring it", quota, cpu_max)
        return None


def available_cpus(*, affinity: Callable[[], int] = _affinity, cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process can keep busy: the affinity mask, at most the quota rounded up, at least 1."""
    cpus = affinity()
    quota = _quota(cpu_max)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)

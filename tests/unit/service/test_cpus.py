from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.service.cpus import available_cpus


@pytest.mark.parametrize(
    ("cpu_max", "affinity", "expected"),
    [
        (None, 8, 8),  # no cgroup v2 file
        ("max 100000\n", 8, 8),  # no quota
        ("200000 100000\n", 8, 2),  # docker --cpus 2
        ("150000 100000\n", 8, 2),  # 1.5 CPUs: two threads can use it
        ("50000 100000\n", 8, 1),  # half a CPU: still one
        ("400000 100000\n", 2, 2),  # quota above the affinity mask
        ("garbage\n", 4, 4),  # unreadable quota: ignored
    ],
)
def test_available_cpus_is_the_affinity_capped_by_the_quota(
    tmp_path: Path, cpu_max: str | None, affinity: int, expected: int
) -> None:
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max, encoding="ascii")
    assert available_cpus(affinity=lambda: affinity, cpu_max=path) == expected


def test_available_cpus_on_this_machine_is_at_least_one() -> None:
    assert available_cpus() >= 1

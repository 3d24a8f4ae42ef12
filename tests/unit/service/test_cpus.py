from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.service.cpus import available_cpus


@pytest.mark.parametrize(
    ("cpu_max", "affinity", "expected"),
    [
        ("max 100000\n", 8, 8),  # no quota
        ("200000 100000\n", 8, 2),  # docker --cpus 2
        ("150000 100000\n", 8, 2),  # 1.5 CPUs: two threads can use it
        ("50000 100000\n", 8, 1),  # half a CPU: still one
        ("400000 100000\n", 2, 2),  # quota above the affinity mask
        ("garbage\n", 4, 4),  # unreadable quota: ignored
        ("100000 0\n", 4, 4),  # a zero period: ignored, not a crash
    ],
)
def test_cgroup_v2_quota_caps_the_affinity(tmp_path: Path, cpu_max: str, affinity: int, expected: int) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max, encoding="ascii")
    assert available_cpus(affinity=lambda: affinity, cgroup_root=tmp_path) == expected


@pytest.mark.parametrize(
    ("quota", "period", "affinity", "expected"),
    [
        ("-1", "100000", 8, 8),  # no quota
        ("300000", "100000", 8, 3),
        ("25000", "100000", 8, 1),
        ("300000", "100000", 2, 2),
    ],
)
def test_cgroup_v1_quota_caps_the_affinity(
    tmp_path: Path, quota: str, period: str, affinity: int, expected: int
) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n", encoding="ascii")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(period + "\n", encoding="ascii")
    assert available_cpus(affinity=lambda: affinity, cgroup_root=tmp_path) == expected


def test_no_cgroup_files_leave_the_affinity(tmp_path: Path) -> None:
    assert available_cpus(affinity=lambda: 6, cgroup_root=tmp_path) == 6
    assert available_cpus(affinity=lambda: 0, cgroup_root=tmp_path) == 1

"""`make bench REDIS=1`: the with/without-Redis comparison and its targets (>= 0.9, <= +5 ms)."""

from __future__ import annotations

import pytest

from loadtests import bench


def phase(rps: float | None, p99: float | None) -> dict:
    return {"saturation": {"throughput_rps": rps}, "half_load": {"p99_ms": p99}}


def test_comparison_meets_targets_within_bounds() -> None:
    got = bench.redis_comparison(phase(100.0, 40.0), phase(92.0, 44.5))
    assert got["saturation_ratio"] == 0.92 and got["p99_delta_ms"] == 4.5
    assert {k: v["met"] for k, v in got["targets"].items()} == {"saturation_ratio": True, "p99_delta_ms": True}


def test_comparison_flags_a_slower_redis_run() -> None:
    got = bench.redis_comparison(phase(100.0, 40.0), phase(85.0, 46.0))
    assert got["saturation_ratio"] == 0.85 and got["p99_delta_ms"] == 6.0
    assert {k: v["met"] for k, v in got["targets"].items()} == {"saturation_ratio": False, "p99_delta_ms": False}


def test_comparison_of_a_failed_phase_is_none_not_zero() -> None:
    got = bench.redis_comparison(phase(100.0, 40.0), {"error": "redis-server is not on PATH"})
    assert got["saturation_ratio"] is None and got["p99_delta_ms"] is None
    assert [v["met"] for v in got["targets"].values()] == [None, None]


def test_redis_flag_defaults_to_a_private_server() -> None:
    assert bench._parse_args(["--redis"]).redis == "auto"
    assert bench._parse_args(["--redis", "redis://cache:6379/0"]).redis == "redis://cache:6379/0"
    assert bench._parse_args([]).redis is None


def test_missing_redis_server_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from loadtests import _redis

    monkeypatch.setattr(_redis.shutil, "which", lambda name: None)
    with (
        pytest.raises(_redis.RedisStartError, match=r"redis-server is not on PATH; install it"),
        _redis.redis_for_bench("auto", log_dir=tmp_path),
    ):
        pass

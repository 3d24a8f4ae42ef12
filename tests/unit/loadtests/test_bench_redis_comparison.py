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


def test_balanced_order_puts_each_mode_at_every_position() -> None:
    assert bench.balanced_order(1) == "LR"
    assert bench.balanced_order(2) == "LRRL"
    order = bench.balanced_order(4)
    assert order == "LRRLRLLR"
    # Every mode as often in the first half as in the second: a drift weighs on both alike.
    assert order[:4].count("L") == order[4:].count("L") == 2


def test_rounds_judge_the_targets_on_pooled_latencies_and_mean_saturation() -> None:
    # The first pair alone would miss the p99 target (+8 ms) by one slow draw; pooled over
    # four pairs the Redis tail is 2 ms longer and the saturation means are 60 and 57.
    rounds = {
        "order": "LRRLRLLR",
        "phases": [
            {"mode": m, **phase(rps, None)}
            for m, rps in zip("RLRLLR", (56.0, 61.0, 58.0, 59.0, 60.0, 57.0), strict=True)
        ],
    }
    latencies = {"L": [20.0] * 392 + [40.0] * 8, "R": [21.0] * 392 + [42.0] * 8}
    got = bench.redis_comparison(phase(60.0, 40.0), phase(57.0, 48.0), rounds=rounds, latencies=latencies)
    assert got["saturation_rps"] == [60.0, 57.0] and got["saturation_ratio"] == 0.95
    assert got["pooled"]["L"] == {"n": 400, "p50_ms": 20.0, "p95_ms": 20.0, "p99_ms": 40.0}
    assert got["p99_ms_half_load"] == [40.0, 42.0] and got["p99_delta_ms"] == 2.0
    assert {k: v["met"] for k, v in got["targets"].items()} == {"saturation_ratio": True, "p99_delta_ms": True}
    # Without rounds the same pair is judged alone.
    alone = bench.redis_comparison(phase(60.0, 40.0), phase(57.0, 48.0))
    assert "pooled" not in alone and alone["p99_delta_ms"] == 8.0 and not alone["targets"]["p99_delta_ms"]["met"]


def test_redis_rounds_need_redis_and_at_least_one_pair(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench._parse_args(["--redis", "--redis-rounds", "4"]).redis_rounds == 4
    assert bench._parse_args([]).redis_rounds == 1
    with pytest.raises(SystemExit):
        bench._parse_args(["--redis-rounds", "3"])
    assert "--redis-rounds needs --redis" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench._parse_args(["--redis", "--redis-rounds", "0"])
    assert "give 1 or more pairs" in capsys.readouterr().err

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
    latencies = {"L": [20.0] * 380 + [40.0] * 20, "R": [21.0] * 380 + [42.0] * 20}
    got = bench.redis_comparison(phase(60.0, 40.0), phase(57.0, 48.0), rounds=rounds, latencies=latencies)
    assert got["saturation_rps"] == [60.0, 57.0] and got["saturation_ratio"] == 0.95
    # The same estimator as every phase's percentiles (linear interpolation).
    assert got["pooled"]["L"] == {"n": 400, "p50_ms": 20.0, "p95_ms": 21.0, "p99_ms": 40.0}
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


class FakeDeadline:
    def __init__(self, left: float) -> None:
        self.seconds = left

    def left(self) -> float:
        return self.seconds


def _rounds_setup(monkeypatch: pytest.MonkeyPatch, *, left: float, fail_at: int | None = None) -> tuple:
    deadline = FakeDeadline(left)
    calls: list[str] = []

    def fake_phase(mode: str, latencies_ms: list[float]) -> dict:
        calls.append(mode)
        latencies_ms.extend([10.0 * len(calls)] * 5)
        if fail_at is not None and len(calls) == fail_at:
            raise bench.BenchError("redis-server died")
        deadline.seconds -= 100.0  # each phase takes 100 s of the budget
        return {"saturation": {"throughput_rps": 50.0}, "half_load": {"p99_ms": 30.0}}

    monkeypatch.setattr(bench, "phase_fairgate", lambda *a, latencies_ms, **k: fake_phase("L", latencies_ms))
    monkeypatch.setattr(bench, "phase_fairgate_redis", lambda *a, latencies_ms, **k: fake_phase("R", latencies_ms))
    args = bench._parse_args(["--redis", "--redis-rounds", "4"])
    report = {"fairgate": {"half_load": {"offered_rps": 25.0}}, "phase_seconds": {"fairgate": 100.0, "fairgate_redis": 100.0}}
    latencies: dict[str, list[float]] = {"L": [1.0], "R": [2.0]}  # the first pair's
    return args, report, latencies, deadline, calls


def test_redis_rounds_run_whole_pairs_in_the_balanced_order(monkeypatch: pytest.MonkeyPatch) -> None:
    args, report, latencies, deadline, calls = _rounds_setup(monkeypatch, left=10_000.0)
    got = bench.redis_rounds(args, [], {}, None, deadline, report, latencies)
    assert "".join(calls) == "RLRLLR" and got["order"] == "LRRLRLLR" and "stopped" not in got
    assert len(latencies["L"]) == len(latencies["R"]) == 1 + 3 * 5


def test_redis_rounds_stop_between_pairs_when_the_budget_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    # 350 s left: one more pair (2 x 100 s + 60 s margin) fits, the next does not.
    args, report, latencies, deadline, calls = _rounds_setup(monkeypatch, left=350.0)
    got = bench.redis_rounds(args, [], {}, None, deadline, report, latencies)
    assert "".join(calls) == "RL" and got["order"] == "LRRL" and "--budget" in got["stopped"]


def test_a_failed_round_keeps_the_finished_pairs_and_drops_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    args, report, latencies, deadline, calls = _rounds_setup(monkeypatch, left=10_000.0, fail_at=4)
    got = bench.redis_rounds(args, [], {}, None, deadline, report, latencies)
    assert "".join(calls) == "RLRL" and got["order"] == "LRRL"
    assert "redis-server died" in got["stopped"]
    # The second extra pair's R phase finished and its L failed: neither counts.
    assert len(latencies["L"]) == len(latencies["R"]) == 1 + 5

"""`python -m loadtests.bench --compare-probe` / `--compare-policy A,B`: arguments, the written
policies and the alternating rounds (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fairgate.guardrails import Policy
from loadtests import bench
from loadtests._policy_compare import PolicyRound, alternate_rounds, parse_policy_pair, write_probe_policies


def test_compare_probe_defaults_to_the_default_policys_sample() -> None:
    assert bench._parse_args(["--compare-probe"]).compare_probe == 0.05
    assert bench._parse_args(["--compare-probe", "0.2"]).compare_probe == 0.2
    args = bench._parse_args([])
    assert args.compare_probe is None and args.compare_policy is None
    assert not bench.comparing_policies(args)
    assert bench.comparing_policies(bench._parse_args(["--compare-policy", "a.yaml,b.yaml"]))


def test_compare_policy_and_compare_probe_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench._parse_args(["--compare-probe", "--compare-policy", "a.yaml,b.yaml"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_probe_policies_differ_only_in_the_probe(tmp_path: Path) -> None:
    off, on = write_probe_policies(None, 0.05, tmp_path)
    a, b = (Policy.from_yaml(path) for path in (off, on))
    assert not a.counterfactual.enabled
    assert b.counterfactual.enabled and b.counterfactual.sample == 0.05
    default = Policy.default()
    assert b.counterfactual.max_variants_per_batch == default.counterfactual.max_variants_per_batch
    assert b.counterfactual.kinds == default.counterfactual.kinds
    assert a.version != b.version
    for section in ("groups", "toxicity", "rates", "domain"):
        assert getattr(a, section) == getattr(default, section) == getattr(b, section)


def test_probe_policies_start_from_the_given_base(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"version": "7", "counterfactual": {"max_variants_per_batch": 128}}))
    off, on = write_probe_policies(base, 0.5, tmp_path / "out")
    b = Policy.from_yaml(on)
    assert b.version == "7-probe_on" and b.counterfactual.sample == 0.5
    assert b.counterfactual.max_variants_per_batch == 128
    assert Policy.from_yaml(off).version == "7-probe_off"


@pytest.mark.parametrize("sample", [0.0, 1.5])
def test_probe_sample_out_of_range_names_the_fix(tmp_path: Path, sample: float) -> None:
    with pytest.raises(ValueError, match=r"the sample must be in \(0, 1\]"):
        write_probe_policies(None, sample, tmp_path)


def test_policy_pair_needs_two_existing_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("version: a\n")
    b.write_text("version: b\n")
    assert parse_policy_pair(f"{a}, {b}") == (a, b)
    with pytest.raises(ValueError, match="expected two policy files as A.yaml,B.yaml"):
        parse_policy_pair(str(a))
    with pytest.raises(ValueError, match="missing.yaml is not a file"):
        parse_policy_pair(f"{a},{tmp_path / 'missing.yaml'}")


def test_rounds_alternate_and_sum_per_policy() -> None:
    order: list[str] = []
    rps = {"a": 100.0, "b": 90.0}

    def measure(label: str) -> PolicyRound:
        order.append(label)
        return PolicyRound(completions=int(rps[label] * 10), window_s=10.0, ok_requests=1000, server_cpu_s=5.0)

    result = alternate_rounds(measure, {"a": "off.yaml", "b": "on.yaml"}, rounds=3)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert result["a"]["throughput_rps"] == 100.0 and result["b"]["throughput_rps"] == 90.0
    assert result["b"]["per_round_rps"] == [90.0, 90.0, 90.0]
    assert result["throughput_ratio"] == 0.9
    assert result["a"]["server_cpu_ms_per_request"] == 5.0 and result["cpu_ms_per_request_ratio"] == 1.0


def test_a_round_without_cpu_figures_gives_none_not_zero() -> None:
    def measure(label: str) -> PolicyRound:
        return PolicyRound(completions=10, window_s=1.0, ok_requests=10, server_cpu_s=None if label == "b" else 1.0)

    result = alternate_rounds(measure, {"a": "a", "b": "b"}, rounds=1)
    assert result["b"]["server_cpu_ms_per_request"] is None and result["cpu_ms_per_request_ratio"] is None


def test_compare_server_env_sets_one_side_and_keeps_the_base_policy(tmp_path: Path) -> None:
    args = bench._parse_args([
        "--compare-server-env", "a:FAIRGATE_INTRA_OP_THREADS=1",
        "--compare-server-env", "b:FAIRGATE_GUARD_TAG=fairgate-toxicity:new",
        "--compare-server-env", "B:FAIRGATE_CLASSIFIER_TAG=c:x=y",  # the value may hold ':' and '='
    ])
    assert bench.comparing_policies(args)
    assert bench.side_env(args.compare_server_env) == {
        "a": {"FAIRGATE_INTRA_OP_THREADS": "1"},
        "b": {"FAIRGATE_GUARD_TAG": "fairgate-toxicity:new", "FAIRGATE_CLASSIFIER_TAG": "c:x=y"},
    }
    assert bench._policy_pair(args, tmp_path) == (None, None)  # both serve the bundled default
    policy = tmp_path / "p.yaml"
    args = bench._parse_args(["--policy", str(policy), "--compare-server-env", "a:K=V"])
    assert bench._policy_pair(args, tmp_path) == (policy, policy)


@pytest.mark.parametrize("spec", ["c:K=V", "a:K", "a:=V", "K=V"])
def test_compare_server_env_names_a_bad_setting(spec: str) -> None:
    with pytest.raises(bench.BenchError, match="is not a:KEY=VALUE or b:KEY=VALUE"):
        bench.side_env([spec])


def test_compare_open_rate_is_a_rate_or_half_of_the_slower_side() -> None:
    saturation = {"a": {"throughput_rps": 80.0}, "b": {"throughput_rps": 100.0}}
    assert bench.compare_open_rate("half", saturation, half_load=0.5) == 40.0
    assert bench.compare_open_rate("25", saturation, half_load=0.5) == 25.0
    with pytest.raises(bench.BenchError, match="not a rate in req/s or 'half'"):
        bench.compare_open_rate("fast", saturation, half_load=0.5)
    with pytest.raises(bench.BenchError, match="must be above 0"):
        bench.compare_open_rate("0", saturation, half_load=0.5)
    with pytest.raises(bench.BenchError, match="served nothing"):
        bench.compare_open_rate("half", {"a": {"throughput_rps": 0.0}, "b": {}}, half_load=0.5)


def test_open_rounds_alternate_and_pool_each_sides_latencies(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    calls: list[str] = []
    latency_s = {"url-a": 0.010, "url-b": 0.020}

    class Result:
        def __init__(self, url: str) -> None:
            self.url = url

        def scheduled_in(self, start: float, end: float) -> list[SimpleNamespace]:
            assert (start, end) == (1.0, 3.0), "only the window after the warm-up counts"
            ok = [SimpleNamespace(ok=True, latency_s=latency_s[self.url] * (1 + k / 100)) for k in range(100)]
            return [*ok, SimpleNamespace(ok=False, latency_s=9.0)]

    async def fake_open(url: str, bodies: list[bytes], *, rate: float, seconds: float, args: object) -> Result:
        assert rate == 30.0 and seconds == 3.0
        calls.append(url)
        return Result(url)

    monkeypatch.setattr(bench, "_open", fake_open)
    servers = {"a": SimpleNamespace(url="url-a"), "b": SimpleNamespace(url="url-b")}
    args = bench._parse_args(["--compare-policy-rounds", "2"])

    result = bench._alternate_open_rounds(servers, [b"{}"], args=args, rate=30.0, warmup_s=1.0, seconds=2.0)

    assert calls == ["url-a", "url-b", "url-b", "url-a"]
    assert result["a"]["n"] == 200 and result["b"]["n"] == 200, "failed requests are counted, not pooled"
    assert result["a"]["errors"] == 2 and result["b"]["errors"] == 2
    assert 10.0 <= result["a"]["p50_ms"] < result["a"]["p99_ms"] <= 10.0 * 1.99 + 1e-6
    assert result["p99_delta_ms"] == pytest.approx(result["b"]["p99_ms"] - result["a"]["p99_ms"], abs=1e-3)
    assert result["p99_delta_ms"] > 9.0


def test_a_bad_or_idle_compare_open_rate_is_refused_before_anything_runs(capsys: pytest.CaptureFixture) -> None:
    """Checked when the arguments are read, not after the saturation rounds it would follow."""
    with pytest.raises(SystemExit):
        bench._parse_args(["--compare-server-env", "a:FAIRGATE_OVERLAP_MODELS=false", "--compare-open-rate", "fast"])
    assert "'fast' is not a rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench._parse_args(["--compare-open-rate", "half"])  # no comparison to run it in
    assert "needs a comparison" in capsys.readouterr().err
    args = bench._parse_args(["--compare-probe", "--compare-open-rate", "half"])
    assert args.compare_open_rate == "half"

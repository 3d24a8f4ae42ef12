"""Two policies side by side in one run: ``python -m loadtests.bench --compare-policy A.yaml,B.yaml``.

The server-side twin of loadtests/_compare.py (which compares model variants on the
floor). Both policies are served at once, one ``bentoml serve`` each, and the saturation
closed loop alternates between them in short rounds (A B, then B A, ...), so a drift in
the machine's load falls on both alike; the rounds are summed per policy. The idle server
of each round costs both variants the same.

``--compare-probe [SAMPLE]`` writes the pair itself from the base policy (``--policy`` or
the bundled default): A with ``counterfactual.enabled: false``, B with the probe on at
``SAMPLE`` (default 0.05, the default policy's), so B / A is the probe's throughput cost
(the issue's target: >= 0.90).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "PolicyFigures",
    "PolicyRound",
    "alternate_rounds",
    "alternating_order",
    "parse_policy_pair",
    "write_policy",
    "write_probe_policies",
]

PROBE_TARGET = 0.90  # saturation with the probe on over off (issue 13)


class PolicyRound(BaseModel):
    """One round of one policy: the closed loop's measured window and the server's CPU."""

    model_config = ConfigDict(frozen=True)

    completions: int  # successful answers inside the measurement window
    window_s: float
    ok_requests: int  # successful answers over the whole round (warm-up included)
    server_cpu_s: float | None
    errors: int = 0


class PolicyFigures(BaseModel):
    """One policy's totals over all its rounds."""

    model_config = ConfigDict(frozen=True)

    label: str
    policy: str
    rounds: int
    completions: int
    window_s: float
    throughput_rps: float | None
    per_round_rps: list[float]
    server_cpu_ms_per_request: float | None
    errors: int


def parse_policy_pair(spec: str) -> tuple[Path, Path]:
    """``"a.yaml,b.yaml"`` -> two existing files; the message names the fix otherwise."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"expected two policy files as A.yaml,B.yaml, got {spec!r}")
    paths = (Path(parts[0]), Path(parts[1]))
    for path in paths:
        if not path.is_file():
            raise ValueError(f"--compare-policy: {path} is not a file; pass two existing policy YAML files")
    return paths


def write_policy(base: Path | None, path: Path, *, name: str, counterfactual: dict[str, Any]) -> Path:
    """``base`` (None: the bundled default) with ``counterfactual`` laid over its section, at ``path``.

    Everything else is the base file's own; ``version`` gets ``-name`` appended so
    /guardrails/status tells the variants apart. Validated as the service would
    (:class:`PolicyError`, a ``ValueError``, names the problem).
    """
    import yaml

    from fairgate.guardrails import Policy
    from fairgate.guardrails.policy import default_policy_path

    source = base or default_policy_path()
    data = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
    section = dict(data.get("counterfactual") or {})
    policy = {**data, "version": f"{data.get('version', '0')}-{name}", "counterfactual": {**section, **counterfactual}}
    Policy.from_mapping(policy, source=f"{source} ({name})")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


def write_probe_policies(base: Path | None, sample: float, out_dir: Path) -> tuple[Path, Path]:
    """(probe off, probe on at ``sample``) written into ``out_dir`` from ``base`` (None: the default).

    Everything but the ``counterfactual`` section (and ``version``) is the base file's own.
    """
    if not 0.0 < sample <= 1.0:
        raise ValueError(f"--compare-probe {sample}: the sample must be in (0, 1]; the default policy's is 0.05")
    off = write_policy(base, out_dir / "probe_off.yaml", name="probe_off", counterfactual={"enabled": False})
    on = write_policy(
        base, out_dir / "probe_on.yaml", name="probe_on", counterfactual={"enabled": True, "sample": sample}
    )
    return off, on


def _ratio(b: float | None, a: float | None) -> float | None:
    return round(b / a, 4) if a and b is not None else None


def alternating_order(rounds: int) -> list[str]:
    """Which side runs when over ``rounds`` rounds: A B, then B A, and so on, so a drift of
    the machine falls on both sides alike."""
    return [label for index in range(rounds) for label in (("a", "b") if index % 2 == 0 else ("b", "a"))]


def alternate_rounds(
    measure: Callable[[str], PolicyRound], policies: dict[str, str], *, rounds: int
) -> dict[str, Any]:
    """Alternate ``measure("a")`` and ``measure("b")`` rounds; sum each policy's figures.

    Round ``i`` runs A then B when ``i`` is even, B then A when odd. Returns both
    policies' :class:`PolicyFigures` (as dicts), the saturation ratio B / A and the
    server CPU per request ratio B / A (below 1: B is cheaper).
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be at least 1")
    done: dict[str, list[PolicyRound]] = {"a": [], "b": []}
    for label in alternating_order(rounds):
        done[label].append(measure(label))
    figures = {}
    for label, results in done.items():
        completions = sum(r.completions for r in results)
        window = sum(r.window_s for r in results)
        cpus = [r.server_cpu_s for r in results]
        ok = sum(r.ok_requests for r in results)
        cpu_ms = round(sum(c for c in cpus if c is not None) * 1000 / ok, 3) if ok and None not in cpus else None
        figures[label] = PolicyFigures(
            label=label.upper(),
            policy=policies[label],
            rounds=len(results),
            completions=completions,
            window_s=round(window, 3),
            throughput_rps=round(completions / window, 3) if window > 0 else None,
            per_round_rps=[round(r.completions / r.window_s, 3) if r.window_s > 0 else 0.0 for r in results],
            server_cpu_ms_per_request=cpu_ms,
            errors=sum(r.errors for r in results),
        )
    a, b = figures["a"], figures["b"]
    return {
        "a": a.model_dump(),
        "b": b.model_dump(),
        "throughput_ratio": _ratio(b.throughput_rps, a.throughput_rps),  # B / A: above 1, B is faster
        "cpu_ms_per_request_ratio": _ratio(b.server_cpu_ms_per_request, a.server_cpu_ms_per_request),
    }

"""loadtests.probe_report: the probe-every-item policy and the figures read back (no server)."""

from __future__ import annotations

from pathlib import Path

from fairgate.guardrails import Policy
from loadtests import probe_report
from loadtests._policy_compare import write_policy

METRICS = """\
# HELP fairgate_counterfactual_flips_total Variants whose outcome differs.
# TYPE fairgate_counterfactual_flips_total counter
fairgate_counterfactual_flips_total{group="muslim",kind="religion",model="guard"} 3.0
fairgate_counterfactual_flips_total{group="jewish",kind="religion",model="guard"} 1.0
fairgate_counterfactual_flips_total{group="male",kind="gender",model="classifier"} 2.0
"""


def status(kind: str, guard: tuple[int, int, float, int], classifier: tuple[int, int, float, int]) -> dict:
    def model(name: str, figures: tuple[int, int, float, int]) -> dict:
        probes, variants, mean_gap, flips = figures
        return {
            "model": name,
            "probes": probes,
            "variants": variants,
            "mean_gap": mean_gap,
            "max_gap": mean_gap * 2,
            "flips": flips,
            "flip_rate": flips / variants,
        }

    return {
        "kind": kind,
        "items": guard[0],
        "skipped": 0,
        "models": [model("guard", guard), model("classifier", classifier)],
        "unfavoured": [{"group": "muslim", "count": 2}],
    }


def test_probe_every_item_policy_is_valid_and_keeps_the_kinds(tmp_path: Path) -> None:
    path = write_policy(
        None,
        tmp_path / "p.yaml",
        name="probe_every_item",
        counterfactual={"enabled": True, "sample": 1.0, "max_variants_per_batch": 4096},
    )
    policy = Policy.from_yaml(path)
    assert policy.counterfactual.sample == 1.0 and policy.counterfactual.max_variants_per_batch == 4096
    assert policy.counterfactual.kinds == Policy.default().counterfactual.kinds


def test_flips_are_read_per_kind_model_and_swapped_in_group() -> None:
    assert probe_report.flips_by_group(METRICS) == {
        "religion": {"guard": {"muslim": 3.0, "jewish": 1.0}},
        "gender": {"classifier": {"male": 2.0}},
    }


def test_totals_weigh_each_kind_by_its_probes_and_variants() -> None:
    probe = {
        "sampled": 100,
        "errors": 0,
        "kinds": [
            status("religion", (10, 50, 0.2, 5), (10, 50, 0.1, 0)),
            status("gender", (30, 60, 0.04, 0), (30, 60, 0.02, 2)),
            {"kind": "age", "items": 0, "skipped": 0, "models": [], "unfavoured": []},  # nothing probed: left out
        ],
    }
    got = probe_report.summarize_probe(probe, probe_report.flips_by_group(METRICS))
    assert [k["kind"] for k in got["kinds"]] == ["religion", "gender"]
    assert got["kinds"][0]["models"][0]["flips_by_swapped_in_group"] == {"muslim": 3, "jewish": 1}
    guard = got["overall_per_model"]["guard"]
    assert guard == {"probes": 40, "variants": 110, "mean_gap": 0.08, "flips": 5, "flip_rate": round(5 / 110, 4)}
    assert got["overall_per_model"]["classifier"]["mean_gap"] == 0.04
    assert "religion" in probe_report.format_report({"sets": {"x": {"texts": 2, "actions": {}, "models": {}, **got}}})


def test_text_sets_keep_file_order_and_the_limit() -> None:
    sets = probe_report.text_sets(5)
    assert len(sets["identity"]) == 5
    assert all(len(texts) == 5 for texts in sets.values())

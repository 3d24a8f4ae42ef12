"""`--compare-guard-tag A,B`: both variants in alternating rounds, summed, with B/A ratios."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loadtests import bench
from loadtests._compare import compare_variants, parse_pair


def test_pair_parses_two_tags_and_defaults_to_the_unchanged_model() -> None:
    assert parse_pair("g:v1, g:v2", "x") == ("g:v1", "g:v2")
    assert parse_pair(None, "fairgate-classifier") == ("fairgate-classifier", "fairgate-classifier")
    with pytest.raises(ValueError, match="expected two tags as A,B"):
        parse_pair("only-one", "x")


def test_variants_alternate_and_ratios_are_b_over_a() -> None:
    order: list[str] = []
    cost_ms = {"A": 10.0, "B": 5.0}  # B costs half the CPU and runs twice as fast

    def measure(classifier, guard, texts, *, batch_size, bucket_size, duration_s):
        order.append(classifier)
        texts_done = 100 if classifier == "A" else 200
        return SimpleNamespace(texts=texts_done, duration_s=1.0, cpu_ms_per_text=cost_ms[classifier])

    result = compare_variants(
        lambda label: (label.upper(), label.upper()),
        {"a": ("c:1", "g:1"), "b": ("c:1", "g:2")},
        ["t"] * 64,
        measure=measure,
        rounds=4,
        round_s=1.0,
    )
    assert order == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert result.a.cpu_ms_per_text == 10.0 and result.b.cpu_ms_per_text == 5.0
    assert result.cpu_ms_per_text_ratio == 0.5 and result.throughput_ratio == 2.0
    assert (result.a.guard_tag, result.b.guard_tag) == ("g:1", "g:2")
    assert result.a.texts == 400 and result.b.rounds == 4


def test_compare_flags_parse() -> None:
    args = bench._parse_args(["--compare-guard-tag", "g:a,g:b", "--compare-rounds", "2"])
    assert bench.comparing(args) and args.compare_rounds == 2
    assert not bench.comparing(bench._parse_args([]))

"""``--source`` strings parse into typed sources; malformed ones name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.models.guard import (
    BundledSource,
    CheckpointSource,
    CsvSource,
    DetoxifySource,
    SourceSpecError,
    parse_source,
)


def test_bundled_and_detoxify_variants():
    assert parse_source("bundled") == BundledSource()
    assert parse_source("detoxify:unbiased-small") == DetoxifySource(variant="unbiased-small")
    assert parse_source("detoxify:original").describe() == "detoxify:original"


def test_unknown_detoxify_variant_lists_the_known_ones():
    with pytest.raises(SourceSpecError, match=r"unknown Detoxify variant 'large'.*detoxify:original, detoxify:unbiased"):
        parse_source("detoxify:large")


def test_checkpoint_needs_hf_config(tmp_path: Path):
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"x")
    with pytest.raises(SourceSpecError, match="needs --hf-config DIR"):
        parse_source(f"checkpoint:{ckpt}")
    with pytest.raises(SourceSpecError, match="has no config.json"):
        parse_source(f"checkpoint:{ckpt}", hf_config=tmp_path)
    (tmp_path / "config.json").write_text("{}")
    source = parse_source(f"checkpoint:{ckpt}", hf_config=tmp_path)
    assert source == CheckpointSource(path=ckpt, hf_config=tmp_path)


def test_missing_files_are_named(tmp_path: Path):
    with pytest.raises(SourceSpecError, match=r"checkpoint file '.*nope.ckpt' not found"):
        parse_source(f"checkpoint:{tmp_path / 'nope.ckpt'}", hf_config=tmp_path)
    with pytest.raises(SourceSpecError, match=r"CSV file '.*nope.csv' not found"):
        parse_source(f"csv:{tmp_path / 'nope.csv'}")


def test_csv_source_and_stray_hf_config(tmp_path: Path):
    data = tmp_path / "d.csv"
    data.write_text("text,toxic\na,1\n")
    assert parse_source(f"csv:{data}") == CsvSource(path=data)
    with pytest.raises(SourceSpecError, match="--hf-config only applies to --source checkpoint:PATH"):
        parse_source(f"csv:{data}", hf_config=tmp_path)


@pytest.mark.parametrize("spec", ["", "hub:bert", "csv:", "checkpoint:", "bundled:x"])
def test_unknown_forms_list_the_four_routes(spec: str):
    with pytest.raises(SourceSpecError, match="use bundled, detoxify:VARIANT, checkpoint:PATH"):
        parse_source(spec)

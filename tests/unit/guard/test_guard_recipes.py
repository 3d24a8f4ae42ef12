"""Each ``--source`` maps to one recipe: bundled and csv are trained, checkpoint and detoxify converted."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.models.guard import GuardBuildConfig, SourceSpecError, parse_source
from fairgate.models.guard._recipes import ConvertRecipe, TrainRecipe, recipe_for


def _recipe(spec: str, **options):
    config = GuardBuildConfig(source=spec, **options)
    return recipe_for(parse_source(spec, hf_config=config.hf_config), config)


def test_bundled_and_csv_sources_are_trained(tmp_path: Path):
    data = tmp_path / "labels.csv"
    data.write_text("text,toxic\nhello,0\n", encoding="utf-8")
    bundled = _recipe("bundled")
    assert isinstance(bundled, TrainRecipe) and bundled.name == "bundled:toxicity/toxicity.csv"
    csv = _recipe(f"csv:{data}", label_map=("toxicity=toxic",))
    assert isinstance(csv, TrainRecipe) and csv.name == str(data)


def test_checkpoint_and_detoxify_sources_are_converted(tmp_path: Path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"x")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}", encoding="utf-8")
    converted = _recipe(f"checkpoint:{checkpoint}", hf_config=tmp_path / "hf")
    assert isinstance(converted, ConvertRecipe) and converted.describe == f"checkpoint:{checkpoint}"
    detoxify = _recipe("detoxify:unbiased")
    assert isinstance(detoxify, ConvertRecipe) and detoxify.describe == "detoxify:unbiased"


def test_label_map_is_refused_outside_csv_before_any_work():
    with pytest.raises(SourceSpecError, match=r"--label-map only applies to --source csv:PATH; drop it"):
        _recipe("bundled", label_map=("toxicity=toxic",))


def test_the_bundled_minilm_keeps_its_bottom_layers_frozen_and_other_bases_train_all() -> None:
    from fairgate.models.guard._build import BUNDLED_FREEZE_LAYERS, GuardBuildConfig

    assert GuardBuildConfig().effective_freeze_layers() == BUNDLED_FREEZE_LAYERS == 4
    assert GuardBuildConfig(base="bert-base-uncased").effective_freeze_layers() == 0
    assert GuardBuildConfig(base="dir:/models/enc", freeze_layers=2).effective_freeze_layers() == 2
    assert GuardBuildConfig(freeze_layers=0).effective_freeze_layers() == 0  # "train all" is kept

"""Fixtures for the guard's end-to-end tests: a tiny checkpoint, identity set, stored guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.guard.tiny_detoxify import write_detoxify_checkpoint, write_hf_config_dir

IDENTITY_ROWS = [
    ("t1", "{} people are good", "muslim"),
    ("t1", "{} people are good", "christian"),
    ("t1", "{} people are good", "jewish"),
    ("t2", "thanks for the help , {} people", "muslim"),
    ("t2", "thanks for the help , {} people", "christian"),
    ("t2", "thanks for the help , {} people", "jewish"),
    ("t3", "it was a great film for {} and men", "women"),
]


def write_identity_csv(path: Path) -> Path:
    lines = ["template_id,text,group,axis,sentiment,toxic"]
    for template, text, group in IDENTITY_ROWS:
        lines.append(f'{template},"{text.format(group)}",{group},religion,positive,0')
    lines.append('t9,"you are an idiot muslim",muslim,religion,negative,1')  # toxic: excluded
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hf_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hf_config_dir(tmp_path_factory.mktemp("hf-config"))


@pytest.fixture(scope="module")
def identity_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identity_csv(tmp_path_factory.mktemp("identity") / "identity_sentences.csv")


@pytest.fixture(scope="module")
def unbiased_checkpoint(tmp_path_factory: pytest.TempPathFactory, hf_config_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "toxic_debiased-tiny.ckpt"
    return write_detoxify_checkpoint(path, hf_config_dir, layout="unbiased", seed=3)

"""The library imports with neither torch, transformers nor BentoML (a product can embed it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import importlib, importlib.abc, pkgutil, sys

BLOCKED = ("torch", "bentoml", "transformers", "optimum", "detoxify")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
        return None

sys.meta_path.insert(0, Block())
import guardrails
names = ["guardrails"]
for info in pkgutil.walk_packages(guardrails.__path__, "guardrails."):
    importlib.import_module(info.name)
    names.append(info.name)
import guardrails.simulate_cli
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print(" ".join(sorted(names)))
"""


def test_guardrails_imports_without_torch_transformers_bentoml() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    imported = set(proc.stdout.split())
    for module in (
        "guardrails",
        "guardrails.guard",
        "guardrails.onnx_model",
        "guardrails.policy",
        "guardrails.rates",
        "guardrails.store",
        "guardrails.scorers",
        "guardrails.groups",
        "guardrails.metrics",
        "guardrails.simulate",
        "guardrails.simulate_cli",
    ):
        assert module in imported


def test_blocker_really_blocks() -> None:
    """The meta-path finder must make a torch import fail, or the test above proves nothing."""
    script = SCRIPT.split("import guardrails")[0] + "import torch\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "blocked for this test: torch" in proc.stderr


def test_detoxify_scorer_says_how_to_install_when_missing() -> None:
    script = SCRIPT.split("import guardrails")[0] + (
        "from guardrails.scorers import DetoxifyScorer\n"
        "try:\n    DetoxifyScorer()\nexcept ImportError as e:\n    print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'fairgate[train]'" in proc.stdout

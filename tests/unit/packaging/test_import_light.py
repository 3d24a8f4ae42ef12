"""The embeddable library and the client import with neither torch, transformers nor BentoML.

Run from a directory outside the repository, so only the installed ``fairgate`` name is on
the path (the repository root would also expose its folders as plain packages).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCKER = r"""
import importlib, importlib.abc, pkgutil, sys

BLOCKED = ("torch", "bentoml", "transformers", "optimum", "detoxify")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
        return None

sys.meta_path.insert(0, Block())
"""

WALK = BLOCKER + r"""
import fairgate.guardrails
names = ["fairgate.guardrails"]
for info in pkgutil.walk_packages(fairgate.guardrails.__path__, "fairgate.guardrails."):
    importlib.import_module(info.name)
    names.append(info.name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print(" ".join(sorted(names)))
"""


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_guardrails_imports_without_torch_transformers_bentoml(tmp_path: Path) -> None:
    proc = _run(WALK, tmp_path)
    assert proc.returncode == 0, proc.stderr
    imported = set(proc.stdout.split())
    for module in ("guard", "onnx_model", "policy", "rates", "store", "scorers", "groups",
                   "metrics", "simulate", "simulate_cli"):
        assert f"fairgate.guardrails.{module}" in imported


CLIENT = BLOCKER + r"""
import fairgate.client
from fairgate.client import AsyncFairgateClient, FairgateClient
heavy = ("onnxruntime", "fairgate.service", "fairgate.guardrails", "fairgate.models")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED or m.startswith(heavy))
assert not leaked, leaked
print("ok")
"""


def test_client_imports_without_the_service_or_its_runtimes(tmp_path: Path) -> None:
    """A program that only calls the API carries httpx and pydantic, not BentoML or ONNX Runtime."""
    proc = _run(CLIENT, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_blocker_really_blocks(tmp_path: Path) -> None:
    """The meta-path finder must make a torch import fail, or the test above proves nothing."""
    proc = _run(BLOCKER + "import torch\n", tmp_path)
    assert proc.returncode != 0
    assert "blocked for this test: torch" in proc.stderr


def test_detoxify_scorer_says_how_to_install_when_missing(tmp_path: Path) -> None:
    script = BLOCKER + (
        "from fairgate.guardrails.scorers import DetoxifyScorer\n"
        "try:\n    DetoxifyScorer()\nexcept ImportError as e:\n    print(e)\n"
    )
    proc = _run(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'fairgate[train]'" in proc.stdout


def test_only_fairgate_is_importable_outside_the_repository(tmp_path: Path) -> None:
    script = (
        "import importlib.util, fairgate.guardrails, fairgate.models, fairgate.service\n"
        "print([n for n in ('guardrails', 'models', 'service') if importlib.util.find_spec(n)])\n"
    )
    proc = _run(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"installed top-level names besides fairgate: {proc.stdout}"

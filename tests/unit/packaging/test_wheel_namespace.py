"""The wheel installs one top-level name, ``fairgate`` (never ``guardrails``, ``models`` or ``service``)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def _build_wheel(out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("fairgate-*.whl")
    return wheel


def test_wheel_has_one_top_level_package_and_the_data(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = archive.read(next(n for n in names if n.endswith("top_level.txt"))).decode()
    code = [n for n in names if ".dist-info/" not in n]
    assert {n.split("/")[0] for n in code} == {"fairgate"}
    assert top_level.split() == ["fairgate"]
    for needed in ("fairgate/guardrails/data/default_policy.yaml",
                   "fairgate/guardrails/data/identity_terms.yaml",
                   "fairgate/models/data/toxicity/toxicity.csv",
                   "fairgate/service/service.py",
                   "fairgate/service/edge/__init__.py",
                   "fairgate/guardrails/deadline.py",
                   "fairgate/models/guard/__init__.py",
                   "fairgate/client/__init__.py",
                   "fairgate/client/models.py"):
        assert needed in code, needed


def test_bentofile_names_the_wheel_of_this_version() -> None:
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert version is not None
    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    assert bentofile["python"]["wheels"] == [f"./build/wheel/fairgate-{version.group(1)}-py3-none-any.whl"]
    assert bentofile["service"] == "fairgate.service.service:Fairgate"

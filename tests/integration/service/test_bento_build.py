"""`bentoml build` from the repository, offline: the bento carries both models, the policy,
and only serving dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from loadtests._server import REPO_ROOT as REPO
from tests.helpers.tiny_models import TinyStore

HEAVY = ("torch", "transformers", "optimum", "detoxify", "datasets", "fairlearn")


def test_bento_carries_models_policy_and_serving_dependencies_only(tiny_store: TinyStore, tmp_path: Path) -> None:
    import bentoml

    env = {
        **os.environ,
        "FAIRGATE_CLASSIFIER_TAG": tiny_store.classifier_tag,
        "FAIRGATE_GUARD_TAG": tiny_store.guard_tag,
        # No route to any index: the build must not need the network.
        "PIP_NO_INDEX": "1",
        "UV_OFFLINE": "1",
    }
    # `make build`'s two steps: the project's wheel (what the bento installs), then the bento.
    wheel = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(REPO / "build" / "wheel"), str(REPO)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    done = subprocess.run(
        [str(bentoml_cli), "build", ".", "--output", "tag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")

    bento = bentoml.bentos.get(tag)
    service = bento.info.services[0]
    assert service.name == "Fairgate"
    assert {str(m.tag) for m in service.models} == {tiny_store.classifier_tag, tiny_store.guard_tag}
    root = Path(bento.path)
    wheels = sorted((root / "env" / "python" / "wheels").glob("fairgate-*.whl"))
    assert len(wheels) == 1, "the bento installs the project from its wheel"
    with zipfile.ZipFile(wheels[0]) as archive:
        members = archive.namelist()
    assert {name.split("/")[0] for name in members if ".dist-info" not in name} == {"fairgate"}
    assert "fairgate/service/service.py" in members
    assert "fairgate/guardrails/data/default_policy.yaml" in members
    assert not list((root / "src").rglob("*.py")), "code reaches the bento through the wheel only"
    requirements = (root / "env" / "python" / "requirements.txt").read_text(encoding="utf-8").lower()
    assert "onnxruntime" in requirements and "tokenizers" in requirements
    assert not [name for name in HEAVY if name in requirements], requirements

    exported = bentoml.bentos.export_bento(tag, str(tmp_path / "fairgate.bento"))
    with tarfile.open(exported) as archive:
        names = archive.getnames()
    for model_tag in (tiny_store.classifier_tag, tiny_store.guard_tag):
        name, version = model_tag.split(":")
        assert f"./models/{name}/{version}/model.int8.onnx" in names
        assert f"./models/{name}/{version}/fairgate.json" in names

"""`bentoml build` from the repository, offline: the bento carries both models, the policy,
and only serving dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.integration.service._harness import REPO, TinyStore

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
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    done = subprocess.run(  # noqa: S603 - fixed argv
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
    assert (root / "src" / "guardrails" / "data" / "default_policy.yaml").is_file()
    assert (root / "src" / "service" / "service.py").is_file()
    assert not (root / "src" / "models").exists(), "training code stays out of the bento"
    assert not (root / "src" / "service" / "cli.py").exists(), "the training CLI stays out too"
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

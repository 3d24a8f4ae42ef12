"""Serving needs neither torch nor transformers: import the service and run a batch with both
blocked in a fresh interpreter (ONNX Runtime, tokenizers and numpy only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from loadtests._server import REPO_ROOT as REPO
from tests.helpers.tiny_models import TinyStore
from tests.integration.service._harness import SplitPolicy

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class _Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers", "optimum", "detoxify"):
                raise ImportError(f"{name} is blocked: serving must not import it")
            return None

    sys.meta_path.insert(0, _Blocked())
    """
)

SCRIPT = BLOCKER + textwrap.dedent(
    """
    import json, os
    import prometheus_client
    import fairgate.service.service as svc
    from fairgate.service._runtime import load_runtime, resolve_stored_model
    from fairgate.service.schemas import ClassifyRequest

    settings = svc.Fairgate.inner.settings
    runtime = load_runtime(
        settings=settings,
        classifier=resolve_stored_model(svc.Fairgate.inner.classifier_model, role="classifier", env_var="x"),
        guard=resolve_stored_model(svc.Fairgate.inner.guard_model, role="guard", env_var="x"),
        registry=prometheus_client.CollectorRegistry(),
    )
    results = runtime.pipeline.classify(
        [ClassifyRequest(text=os.environ["TOXIC"]), ClassifyRequest(text=os.environ["BENIGN"], group="female")]
    )
    heavy = sorted(m for m in ("torch", "transformers", "optimum") if m in sys.modules)
    scored = [r.domain_score is not None for r in results]
    threads = {
        "classifier": runtime.pipeline.classifier._session.get_session_options().intra_op_num_threads,
        "guard": runtime.pipeline.explain_scorer.model._session.get_session_options().intra_op_num_threads,
    }
    print(json.dumps({"actions": [r.action for r in results], "heavy": heavy, "domain_scored": scored,
                      "threads": threads}))
    """
)


def test_service_imports_and_serves_without_torch(tiny_store: TinyStore, test_policy: SplitPolicy) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FAIRGATE_CLASSIFIER_TAG": tiny_store.classifier_tag,
        "FAIRGATE_GUARD_TAG": tiny_store.guard_tag,
        "FAIRGATE_POLICY": str(test_policy.path),
        "FAIRGATE_ONNX_VARIANT": "fp32",
        "TOXIC": test_policy.toxic_text,
        "BENIGN": test_policy.benign_text,
        "FAIRGATE_CPUS": "2",  # one worker, models overlapped: classifier 1 thread, guard 2
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # The domain monitor runs without torch too: the allowed item is scored, the blocked one is not.
    assert report["threads"] == {"classifier": 1, "guard": 2}  # what load_runtime gave each session
    del report["threads"]
    assert report == {"actions": ["block", "allow"], "heavy": [], "domain_scored": [False, True]}

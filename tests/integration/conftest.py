"""Fixtures shared by the integration tests that serve the tiny models.

``tiny_store``: the tiny classifier and guard, built once per session (tens of seconds
each time) into the session's private store. ``guard_scores``: the tiny guard's toxicity
score of each candidate text; each area derives its policy from them, so the server must
decide exactly as the test computed. ``start_service``: real ``bentoml serve`` processes
through the one harness (loadtests/_server.py), every one stopped, workers included,
at the end of the module that started it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from loadtests._server import BentoServer
from tests.helpers.tiny_models import TinyStore, save_tiny_store

CANDIDATES = (
    "the food was great and the staff were very kind",
    "i hate this stupid idiot i will kill you",
    "you are an awful rude person",
    "great product fast delivery would buy again",
    "terrible service never again",
    "the movie was good",
    "stupid idiot",
    "i love it",
)


@pytest.fixture(scope="session")
def tiny_store() -> TinyStore:
    """Tiny classifier and guard in this test session's private BentoML store."""
    return save_tiny_store()


@pytest.fixture(scope="session")
def guard_scores(tiny_store: TinyStore) -> dict[str, float]:
    """The tiny guard's ``toxicity`` score of each of ``CANDIDATES``, one text at a time.

    fp32, as the servers run it: int8 dynamic quantisation scales activations per batch,
    so an item's score moves with its batch-mates (by ~5e-5 on these tiny models, as much
    as their whole spread); fp32 scores do not depend on the batch.
    """
    from fairgate.guardrails.onnx_model import OnnxTextModel

    guard = OnnxTextModel.from_directory(tiny_store.guard_path, variant="fp32")
    return {text: float(guard.predict_proba([text])[0][0]) for text in CANDIDATES}


@pytest.fixture(scope="module")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., BentoServer]]:
    """Factory: ``start_service(env, name=...)`` -> a started, not yet ready, fairgate server.

    Each server runs in a directory of its own (``server.workdir``: its log, its BentoML
    home, whatever the test puts there) and is stopped at module end, even if another
    server's stop fails.
    """
    with contextlib.ExitStack() as stack:

        def start(env: Mapping[str, str], *, name: str, workdir: Path | None = None) -> BentoServer:
            server = BentoServer(env=env, log_path=(workdir or tmp_path_factory.mktemp(name)) / "server.log")
            stack.callback(server.stop)
            return server.start()

        yield start

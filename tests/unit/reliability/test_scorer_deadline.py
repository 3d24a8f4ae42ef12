"""A scorer that raises or hangs: the policy's on_error decides, the error is counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails.deadline import EncodingScorerDeadline, ScorerDeadline, ScorerTimeoutError, with_deadline
from fairgate.guardrails.guard import Guard
from fairgate.guardrails.policy import TOXICITY_CATEGORIES, Policy
from fairgate.service._faults import InjectedFault, apply_faults, parse_faults


class SlowScorer:
    categories: Sequence[str] = TOXICITY_CATEGORIES

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.release = threading.Event()

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.release.wait(self.delay)
        return np.zeros((len(texts), len(self.categories)), dtype=np.float32)


def policy(on_error: str) -> Policy:
    return Policy.from_mapping({"toxicity": {"on_error": on_error}, "rates": {"enabled": False}})


class EncodingSlowScorer(SlowScorer):
    """A scorer that reuses another model's tokenisation (the EncodingScorer protocol)."""

    tokenizer_fingerprint = "tok-1"

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.encodings: list[object] = []

    def score(self, texts: Sequence[str], *, encoding: object = None) -> np.ndarray:
        self.encodings.append(encoding)
        return super().score(texts)


def test_the_wrapper_offers_shared_tokenisation_only_when_the_scorer_does() -> None:
    from fairgate.guardrails.scorers import reuses_encoding

    plain = with_deadline(SlowScorer(delay=0.0), timeout_s=1.0)
    assert type(plain) is ScorerDeadline
    assert not reuses_encoding(plain) and not hasattr(plain, "tokenizer_fingerprint")
    with pytest.raises(TypeError):
        plain.score(["a"], encoding="enc")  # type: ignore[call-arg]  # a plain scorer takes no encoding

    inner = EncodingSlowScorer(delay=0.0)
    sharing = with_deadline(inner, timeout_s=1.0)
    assert isinstance(sharing, EncodingScorerDeadline) and reuses_encoding(sharing)
    assert sharing.tokenizer_fingerprint == "tok-1"
    assert sharing.score(["a"], encoding="enc").shape == (1, len(TOXICITY_CATEGORIES))
    assert sharing.score(["b"]).shape == (1, len(TOXICITY_CATEGORIES))
    assert inner.encodings == ["enc", None]
    assert list(sharing.categories) == list(TOXICITY_CATEGORIES)


def test_a_nonpositive_deadline_is_refused() -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        with_deadline(SlowScorer(delay=0.0), timeout_s=0)


def test_deadline_turns_a_hung_scorer_into_an_error_fast() -> None:
    slow = SlowScorer(delay=5.0)
    scorer = ScorerDeadline(scorer=slow, timeout_s=0.1)
    started = time.perf_counter()
    with pytest.raises(ScorerTimeoutError, match="longer than 0.1 s"):
        scorer.score(["a"])
    # The hung call still runs: the next one fails at once instead of queueing.
    with pytest.raises(ScorerTimeoutError, match="still busy"):
        scorer.score(["b"])
    assert time.perf_counter() - started < 1.0
    slow.release.set()
    time.sleep(0.05)
    assert scorer.score(["c"]).shape == (1, len(TOXICITY_CATEGORIES))


@pytest.mark.parametrize(("on_error", "action"), [("flag", "flag"), ("block", "block"), ("allow", "allow")])
def test_on_error_decides_a_timed_out_scorer(on_error: str, action: str) -> None:
    registry = CollectorRegistry()
    slow = SlowScorer(delay=2.0)
    guard = Guard(policy=policy(on_error), scorer=ScorerDeadline(scorer=slow, timeout_s=0.05), registry=registry)
    screens = guard.screen(["text one", "text two"], [None, "female"])
    decisions = guard.review(screens, [None if action == "block" else "positive"] * 2)
    slow.release.set()
    assert [d.action for d in decisions] == [action, action]
    if action != "allow":
        reason = decisions[0].reasons[0]
        assert reason.code == "monitor_error" and f"on_error={on_error}" in reason.message
    assert registry.get_sample_value("fairgate_monitor_errors_total", {"monitor": "toxicity"}) == 1.0
    assert registry.get_sample_value(
        "fairgate_decisions_total", {"action": action, "reason": "monitor_error" if action != "allow" else "none"}
    ) == 2.0


def test_injected_faults_parse_and_wrap() -> None:
    assert parse_faults(None) == {}
    assert parse_faults("scorer=sleep:2, classifier=raise") == {"scorer": ("sleep", 2.0), "classifier": ("raise", 0.0)}
    with pytest.raises(ValueError, match="FAIRGATE_FAULTS='model=explode'"):
        parse_faults("model=explode")
    scorer, classifier = SlowScorer(0.0), object()
    assert apply_faults({}, scorer=scorer, classifier=classifier) == (scorer, classifier)
    faulty, _ = apply_faults(parse_faults("scorer=raise"), scorer=scorer, classifier=classifier)
    with pytest.raises(InjectedFault):
        faulty.score(["x"])
    registry = CollectorRegistry()
    guard = Guard(policy=policy("block"), scorer=faulty, registry=registry)
    assert guard.screen(["x"])[0].action == "block"
    assert registry.get_sample_value("fairgate_monitor_errors_total", {"monitor": "toxicity"}) == 1.0

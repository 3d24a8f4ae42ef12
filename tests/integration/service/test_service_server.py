"""The real server on a free port with tiny models: every endpoint, schemas, decisions,
readiness, metrics, with one worker and with two.

Three servers per run (one worker, two workers, one whose guard model is missing), each
started once for the module; the whole file stays within about a minute on two cores.
"""

from __future__ import annotations

import concurrent.futures as futures
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fairgate.guardrails.decision import CounterfactualStatus
from fairgate.service.edge.errors import ErrorResponse
from fairgate.service.schemas import ClassifyResult, GuardrailsStatusResponse
from loadtests._server import BentoServer
from tests.helpers.error_shape import assert_error_shape
from tests.helpers.tiny_models import TinyStore
from tests.integration.service._harness import SplitPolicy, service_env

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

CONTRACT_METRICS = (
    "fairgate_decisions",
    "fairgate_toxicity_score",
    "fairgate_outcomes",
    "fairgate_group_rate",
    "fairgate_impact_ratio",
    "fairgate_alert_active",
    "fairgate_monitor_errors",
    "fairgate_monitor_duration_seconds",
    "fairgate_inference_duration_seconds",
    "fairgate_batch_size",
    "fairgate_model_info",
    "fairgate_policy_info",
)


def metric_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric_families(url: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text)}


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (e.g. over every worker)."""
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


@pytest.fixture(scope="module")
def one_worker(start_service, tiny_store: TinyStore, test_policy: SplitPolicy) -> Iterator[BentoServer]:
    server = start_service(
        service_env(tiny_store, test_policy, FAIRGATE_WORKERS="1", FAIRGATE_MAX_EXPLAINED="2"), name="one-worker"
    )
    server.wait_ready()
    yield server


@pytest.fixture(scope="module")
def two_workers(start_service, tiny_store: TinyStore, test_policy: SplitPolicy) -> Iterator[BentoServer]:
    server = start_service(service_env(tiny_store, test_policy, FAIRGATE_WORKERS="2"), name="two-workers")
    server.wait_ready()
    yield server


def wait_for_probe(url: str, timeout_s: float = 30.0) -> CounterfactualStatus:
    """The worker's probe status once no decided batch waits for the background probe."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = GuardrailsStatusResponse.model_validate(httpx.get(url + "/guardrails/status", timeout=10).json())
        probe = status.guardrails.counterfactual if status.guardrails is not None else None
        assert probe is not None, "the status has no counterfactual section"
        if probe.pending == 0 or time.monotonic() > deadline:
            return probe
        time.sleep(0.05)


def classify(url: str, text: str, group: str | None = None) -> httpx.Response:
    return httpx.post(url + "/classify", json={"text": text, "group": group}, timeout=30)


def test_readyz_turns_200_once_models_and_policy_are_loaded(one_worker: BentoServer) -> None:
    assert one_worker.readyz_codes[-1] == 200
    assert httpx.get(one_worker.url + "/healthz", timeout=5).status_code == 200
    status = GuardrailsStatusResponse.model_validate(httpx.get(one_worker.url + "/guardrails/status").json())
    assert status.ready and status.error is None


def test_benign_text_is_allowed_with_a_label(one_worker: BentoServer, test_policy: SplitPolicy) -> None:
    response = classify(one_worker.url, test_policy.benign_text, "male")

    assert response.status_code == 200, response.text
    result = ClassifyResult.model_validate(response.json())
    assert result.action == "allow" and result.reasons == []
    assert result.label in ("negative", "positive")
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert result.toxicity["toxicity"] < test_policy.threshold
    assert result.groups == ["male"]
    # The tiny classifier has the embedding output and domain statistics: every classified item is scored.
    assert result.domain_score is not None and result.domain_score >= 0


def test_toxic_text_is_blocked_with_the_reason(one_worker: BentoServer, test_policy: SplitPolicy) -> None:
    response = classify(one_worker.url, test_policy.toxic_text)

    assert response.status_code == 200, response.text
    result = ClassifyResult.model_validate(response.json())
    assert result.action == "block"
    assert result.label is None and result.scores == {}
    reason = result.reasons[0]
    assert (reason.monitor, reason.category, reason.action) == ("toxicity", "toxicity", "block")
    assert reason.threshold == pytest.approx(test_policy.threshold)
    assert reason.value is not None and reason.value >= test_policy.threshold
    assert f"block threshold {reason.threshold}" in reason.message
    assert result.groups == ["none"]


def test_explain_names_the_word_that_raises_toxicity_most_and_too_many_get_413(
    one_worker: BentoServer, test_policy: SplitPolicy, tiny_store: TinyStore
) -> None:
    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.guardrails.word_spans import mask_words, split_words

    # The tiny guard's random weights know no abusive word: take the word of the toxic text
    # whose removal lowers its toxicity score most (fp32, as the server runs it).
    text = test_policy.toxic_text
    spans = split_words(text)
    guard = OnnxTextModel.from_directory(tiny_store.guard_path, variant="fp32")
    scores = guard.predict_proba([text, *(mask_words(text, [span]) for span in spans)])[:, 0]
    drops = sorted(((float(scores[0] - scores[k + 1]), k) for k in range(len(spans))), reverse=True)
    assert drops[0][0] > 0 and drops[0][0] - drops[1][0] > 1e-7, drops  # one word stands out
    abusive = spans[drops[0][1]]

    response = httpx.post(one_worker.url + "/classify", json={"text": text, "explain": True}, timeout=30)
    assert response.status_code == 200, response.text
    result = ClassifyResult.model_validate(response.json())
    assert result.action == "block" and result.explanation is not None
    [label] = result.explanation.labels  # blocked: the guard's category only, no classifier label
    assert (label.model, label.label, label.action) == ("guard", "toxicity", "block")
    first = label.words[0]
    assert (first.start, first.end, first.word) == (abusive.start, abusive.end, abusive.word)
    assert first.contribution == pytest.approx(drops[0][0], abs=1e-4)
    assert classify(one_worker.url, text).json().get("explanation") is None  # not asked: not computed

    items = [{"text": test_policy.benign_text, "explain": True}] * 3
    too_many = httpx.post(one_worker.url + "/classify_batch", json={"items": items}, timeout=30)
    error = assert_error_shape(too_many, 413)
    assert "limit of 2 per request (FAIRGATE_MAX_EXPLAINED)" in error.error


def test_batch_answers_one_result_per_item_in_order(one_worker: BentoServer, test_policy: SplitPolicy) -> None:
    items = [
        {"text": test_policy.benign_text, "group": "female"},
        {"text": test_policy.toxic_text, "group": "male"},
        {"text": test_policy.benign_text, "group": "someone-else"},
    ]
    response = httpx.post(one_worker.url + "/classify_batch", json={"items": items}, timeout=30)

    assert response.status_code == 200, response.text
    results = [ClassifyResult.model_validate(r) for r in response.json()]
    assert [r.action for r in results] == ["allow", "block", "allow"]
    assert [r.groups for r in results] == [["female"], ["male"], ["other"]]
    assert len({r.request_id for r in results}) == 3


@pytest.mark.parametrize(
    ("route", "body", "fragment"),
    [
        ("/classify_batch", {"items": [{"text": "a"}] * 9}, "at most 8 items"),
        ("/classify_batch", {"items": []}, "at least 1 item"),
        ("/classify", {"text": "x" * 501}, "at most 500 characters"),
        ("/classify", {"text": "   "}, "text is empty or has nothing visible in it"),
        ("/classify", [{"text": "a"}], "send several items to /classify_batch"),
        ("/classify", {"text": "a", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_requests_get_400_naming_the_limit(
    one_worker: BentoServer, route: str, body: object, fragment: str
) -> None:
    response = httpx.post(one_worker.url + route, json=body, timeout=10)
    assert fragment in assert_error_shape(response, 400).error


def test_concurrent_singles_are_batched_and_all_answered(one_worker: BentoServer, test_policy: SplitPolicy) -> None:
    before = metric_samples(one_worker.url)

    def call(i: int) -> int:
        with httpx.Client(timeout=30) as client:
            codes = [
                client.post(one_worker.url + "/classify", json={"text": test_policy.benign_text}).status_code
                for _ in range(10)
            ]
        return sum(code == 200 for code in codes)

    with futures.ThreadPoolExecutor(16) as pool:
        answered = sum(pool.map(call, range(16)))

    after = metric_samples(one_worker.url)
    assert answered == 160
    batches = total(after, "fairgate_batch_size_count", stage="request") - total(
        before, "fairgate_batch_size_count", stage="request"
    )
    items = total(after, "fairgate_batch_size_sum", stage="request") - total(
        before, "fairgate_batch_size_sum", stage="request"
    )
    assert items == 160
    assert batches < 160, "adaptive batching should join concurrent /classify calls"


def test_rate_monitor_flags_the_disadvantaged_group(one_worker: BentoServer, test_policy: SplitPolicy) -> None:
    items = [{"text": test_policy.toxic_text, "group": "female"}, {"text": test_policy.benign_text, "group": "male"}]
    for _ in range(4):
        assert httpx.post(one_worker.url + "/classify_batch", json={"items": items * 4}, timeout=30).status_code == 200

    status = GuardrailsStatusResponse.model_validate(httpx.get(one_worker.url + "/guardrails/status").json())
    monitor = next(m for m in status.guardrails.monitors if m.name == "blocked")
    assert monitor.active == ["female"]
    female = next(g for g in monitor.groups if g.group == "female")
    assert female.alert and female.impact_ratio is not None and female.ratio_upper is not None
    assert female.ratio_upper < 0.8

    result = ClassifyResult.model_validate(classify(one_worker.url, test_policy.benign_text, "female").json())
    assert result.action == "flag" and result.label is not None
    reason = next(r for r in result.reasons if r.code == "rate_blocked")
    assert (reason.group, reason.threshold) == ("female", 0.8)
    samples = metric_samples(one_worker.url)
    assert total(samples, "fairgate_alert_active", monitor="blocked", group="female") == 1


def test_status_names_policy_models_and_worker(
    one_worker: BentoServer, tiny_store: TinyStore, test_policy: SplitPolicy
) -> None:
    status = GuardrailsStatusResponse.model_validate(httpx.get(one_worker.url + "/guardrails/status").json())

    assert status.policy_version == test_policy.version
    assert status.policy_path == str(test_policy.path)
    assert {m.role: m.tag for m in status.models} == {
        "classifier": tiny_store.classifier_tag,
        "guard": tiny_store.guard_tag,
    }
    assert status.worker.pid > 0 and status.worker.index == 1 and status.worker.workers == 1
    assert status.window_scope == "worker"
    assert status.shared_tokenization is True  # both tiny models come from one tokenizer
    assert status.guardrails is not None and status.guardrails.domain is not None
    assert status.guardrails.domain.enabled and status.guardrails.domain.quantile == 0.99


def test_metrics_carry_every_fairgate_metric_and_move(one_worker: BentoServer, test_policy: SplitPolicy) -> None:
    classify(one_worker.url, test_policy.benign_text, "female")  # at least one of everything
    before = metric_samples(one_worker.url)
    for _ in range(3):
        assert classify(one_worker.url, test_policy.toxic_text, "male").status_code == 200
    after = metric_samples(one_worker.url)

    names = metric_families(one_worker.url)
    missing = [name for name in CONTRACT_METRICS if name not in names]
    assert not missing, f"missing from /metrics: {missing}"
    blocked = {"action": "block", "reason": "toxicity_toxicity"}
    assert total(after, "fairgate_decisions_total", **blocked) - total(before, "fairgate_decisions_total", **blocked) == 3
    assert total(after, "fairgate_model_info", role="guard") == 1
    assert total(after, "fairgate_policy_info", version=test_policy.version) == 1
    assert any(name.startswith("bentoml_service_request") for name, _ in after)


def test_traffic_naming_groups_moves_the_counterfactual_metrics_and_status(
    one_worker: BentoServer, test_policy: SplitPolicy
) -> None:
    # The test policy probes every item (counterfactual.sample: 1.0); earlier tests' probes
    # may still be queued on this worker, and a burst of them may have overflowed the queue
    # (dropped, by design, and counted): only this batch's outcome is asserted.
    idle = wait_for_probe(one_worker.url)
    before = metric_samples(one_worker.url)
    items = [
        {"text": "Muslims deserve the same rights as everyone.", "group": None},
        {"text": "The women met the men at the market.", "group": None},
        {"text": test_policy.benign_text, "group": "female"},
    ]
    response = httpx.post(one_worker.url + "/classify_batch", json={"items": items}, timeout=30)
    assert response.status_code == 200
    # The service answers first and probes on a background thread: wait until it is done.
    status = wait_for_probe(one_worker.url)
    assert status.pending == 0 and status.dropped == idle.dropped  # this batch was probed, not dropped
    after = metric_samples(one_worker.url)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # religion: the five other religions; gender: "women" and "men" both written as each
    # of the two other genders.
    assert moved("fairgate_counterfactual_variants_total", kind="religion", model="guard") == 5
    assert moved("fairgate_counterfactual_variants_total", kind="gender", model="guard") == 2
    assert moved("fairgate_counterfactual_gap_count", kind="religion", model="guard") == 1
    status = GuardrailsStatusResponse.model_validate(httpx.get(one_worker.url + "/guardrails/status").json())
    probe = status.guardrails.counterfactual if status.guardrails is not None else None
    assert probe is not None and probe.enabled and probe.sample == 1.0
    religion = next(k for k in probe.kinds if k.kind == "religion")
    guard_side = next(m for m in religion.models if m.model == "guard")
    assert religion.items >= 1 and guard_side.variants >= 5 and guard_side.mean_gap is not None


def test_openapi_documents_the_schemas_with_examples(one_worker: BentoServer) -> None:
    spec = httpx.get(one_worker.url + "/docs.json", timeout=10).json()

    assert {"/classify", "/classify_batch", "/guardrails/status", "/readyz", "/metrics"} <= set(spec["paths"])
    request = spec["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request["title"] == "ClassifyRequest" and "example" in request
    assert request["properties"]["text"]["maxLength"] == 500
    schemas = spec["components"]["schemas"]
    assert {"ClassifyResult", "Reason", "GuardrailsStatusResponse"} <= set(schemas)
    assert "example" in schemas["ClassifyResult"]
    assert request["properties"]["explain"]["type"] == "boolean"
    assert "example" in schemas["ItemExplanation"] and "ExplainedWord" in schemas
    # One error shape: the component is ErrorResponse's schema, and every 4xx/5xx refers to it.
    expected = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schemas.pop("FieldError") == expected.pop("$defs")["FieldError"]
    assert schemas["FairgateError"] == expected
    errors = {
        (path, method, code): response["content"]["application/json"]["schema"]
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for code, response in operation.get("responses", {}).items()
        if code[0] in "45"
    }
    assert {("/classify", "post", code) for code in ("400", "413", "415", "503")} <= set(errors)
    assert set(map(str, errors.values())) == {str({"$ref": "#/components/schemas/FairgateError"})}


def test_python_client_calls_both_inference_apis(one_worker: BentoServer, test_policy: SplitPolicy) -> None:
    import bentoml

    with bentoml.SyncHTTPClient(one_worker.url, server_ready_timeout=10) as client:
        single = client.classify({"text": test_policy.toxic_text, "group": "female"})
        batch = client.classify_batch(items=[{"text": test_policy.benign_text, "group": "male"}])

    assert single["action"] == "block" and single["label"] is None
    assert len(batch) == 1 and batch[0]["action"] in ("allow", "flag")


def test_two_workers_sum_their_counters_and_say_who_answered(
    two_workers: BentoServer, test_policy: SplitPolicy
) -> None:
    before = metric_samples(two_workers.url)
    pids: set[int] = set()
    for _ in range(40):  # a fresh connection each time, so both workers get some
        status = httpx.get(two_workers.url + "/guardrails/status", timeout=10).json()
        pids.add(status["worker"]["pid"])
        assert status["worker"]["workers"] == 2 and status["worker"]["index"] in (1, 2)
        assert classify(two_workers.url, test_policy.toxic_text, "female").status_code == 200

    after = metric_samples(two_workers.url)
    assert len(pids) == 2, "both workers should have answered 40 fresh connections"
    blocked = {"action": "block", "reason": "toxicity_toxicity"}
    assert total(after, "fairgate_decisions_total", **blocked) - total(before, "fairgate_decisions_total", **blocked) == 40
    assert total(after, "fairgate_toxicity_score_count", stage="input", category="toxicity") - total(
        before, "fairgate_toxicity_score_count", stage="input", category="toxicity"
    ) == 40
    # Info gauges use multiprocess_mode=max: one series, value 1, whatever the worker count.
    assert total(after, "fairgate_policy_info", version=test_policy.version) == 1


def test_bentoml_dispatcher_mode_batches_and_answers(
    start_service, tiny_store: TinyStore, test_policy: SplitPolicy
) -> None:
    env = service_env(tiny_store, test_policy, FAIRGATE_BATCHING="bentoml", FAIRGATE_MAX_LATENCY_MS="10000")
    server = start_service(env, name="bentoml-batching")
    server.wait_ready()

    single = ClassifyResult.model_validate(classify(server.url, test_policy.toxic_text).json())
    batch = httpx.post(
        server.url + "/classify_batch", json={"items": [{"text": test_policy.benign_text}] * 3}, timeout=30
    ).json()
    with futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: classify(server.url, test_policy.benign_text).status_code, range(96)))

    assert single.action == "block" and single.label is None
    assert [r["action"] for r in batch] == ["allow"] * 3
    assert codes.count(200) == 96
    samples = metric_samples(server.url)
    assert total(samples, "fairgate_batch_size_sum", stage="request") == 100
    assert total(samples, "fairgate_batch_size_count", stage="request") < 100
    assert total(samples, "bentoml_service_adaptive_batch_size_count") > 0


def test_bad_policy_keeps_readyz_503_and_says_why(
    start_service, tiny_store: TinyStore, test_policy: SplitPolicy, tmp_path
) -> None:
    policy = tmp_path / "typo.yaml"
    policy.write_text("version: bad-1\ntoxicity:\n  categoriez: {}\n", encoding="utf-8")
    server = start_service(service_env(tiny_store, test_policy, FAIRGATE_POLICY=str(policy)), name="bad-policy")
    server.wait_ready(status=503)
    status = httpx.get(server.url + "/guardrails/status", timeout=10).json()
    for _ in range(100):  # the load runs in the background; wait for it to fail
        if status["error"] and "failed to load" in status["error"]:
            break
        time.sleep(0.1)
        status = httpx.get(server.url + "/guardrails/status", timeout=10).json()

    assert status["ready"] is False
    assert "toxicity.categoriez: unknown key" in status["error"]
    assert httpx.get(server.url + "/readyz", timeout=5).status_code == 503
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    response = classify(server.url, "hello")
    assert response.headers["retry-after"] == "1"
    assert "PolicyError" in assert_error_shape(response, 503).error


def test_missing_model_stops_serve_naming_the_tag(
    start_service, tiny_store: TinyStore, test_policy: SplitPolicy
) -> None:
    env = service_env(tiny_store, test_policy, FAIRGATE_GUARD_TAG="fairgate-toxicity:doesnotexist")
    server = start_service(env, name="missing-guard")

    assert server.wait_exit(timeout_s=120) != 0
    assert "fairgate-toxicity:doesnotexist could not be found locally" in server.log_tail()

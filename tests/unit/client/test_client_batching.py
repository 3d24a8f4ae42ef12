"""classify_many splits a long list into requests of at most max_items and keeps the order."""

from __future__ import annotations

import httpx
import pytest

from fairgate.client import ClassifyItem, FairgateClient
from tests.helpers.fake_fairgate import FakeFairgate


def client_for(fake: FakeFairgate, **kwargs) -> FairgateClient:
    return FairgateClient(base_url="http://fairgate.test", transport=httpx.MockTransport(fake.handle), **kwargs)


def test_splits_into_requests_of_at_most_max_items_in_order() -> None:
    fake = FakeFairgate(max_items=8)
    texts = [f"text {i}" for i in range(21)]
    with client_for(fake, max_items=8) as client:
        results = client.classify_many(texts)
    assert [r.request_id for r in results] == texts
    assert fake.batch_sizes() == [8, 8, 5]


def test_default_batch_is_256_and_a_smaller_batch_size_is_honoured() -> None:
    fake = FakeFairgate()
    texts = [str(i) for i in range(600)]
    with client_for(fake) as client:
        assert [r.request_id for r in client.classify_many(texts)] == texts
        assert fake.batch_sizes() == [256, 256, 88]
        client.classify_many(texts[:10], batch_size=4)
        client.classify_many(texts[:10], batch_size=1000)  # never above max_items
    assert fake.batch_sizes()[3:] == [4, 4, 2, 10]


def test_items_may_be_texts_models_or_mappings_and_keep_their_groups() -> None:
    fake = FakeFairgate()
    items = ["plain", ClassifyItem(text="model", group="female"), {"text": "mapping", "group": "male"}]
    with client_for(fake) as client:
        results = client.classify_batch(items)
    assert [(r.request_id, r.groups) for r in results] == [
        ("plain", ["none"]), ("model", ["female"]), ("mapping", ["male"])
    ]


def test_empty_and_oversized_batches_fail_before_sending() -> None:
    fake = FakeFairgate()
    with client_for(fake, max_items=2) as client:
        assert client.classify_many([]) == []
        with pytest.raises(ValueError, match="at least one item"):
            client.classify_batch([])
        with pytest.raises(ValueError, match=r"3 items in one request, over max_items=2; use classify_many"):
            client.classify_batch(["a", "b", "c"])
        with pytest.raises(ValueError, match=r"is not \{'text': str"):
            client.classify_batch([{"txt": "typo"}])
    assert fake.requests == []


def test_status_is_typed() -> None:
    with client_for(FakeFairgate()) as client:
        status = client.status()
    assert status.ready and status.policy_version == "7" and status.models[0].labels == ["negative", "positive"]


def test_explain_is_sent_only_when_asked() -> None:
    # A server older than explanations refuses unknown fields, so False is not sent.
    from fairgate.client._exchange import item_body

    assert item_body(ClassifyItem(text="a")) == {"text": "a", "group": None}
    assert item_body({"text": "a", "explain": True}) == {"text": "a", "group": None, "explain": True}

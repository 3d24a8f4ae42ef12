"""Held-out splits are seeded and stratified; head rewiring keeps or disables outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fairgate.models.guard import CATEGORIES, read_guard_csv
from fairgate.models.guard._head import DISABLED_LOGIT, rewire_head
from fairgate.models.guard._splits import split_guard_data, write_split


def _data(tmp_path: Path, n: int = 100):
    lines = ["text,toxic"] + [f"text {i},{int(i % 4 == 0)}" for i in range(n)]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    return read_guard_csv(path)


def test_split_is_seeded_disjoint_and_stratified(tmp_path: Path):
    data = _data(tmp_path)
    a = split_guard_data(data, seed=0, test_fraction=0.2, validation_fraction=0.1)
    b = split_guard_data(data, seed=0, test_fraction=0.2, validation_fraction=0.1)
    c = split_guard_data(data, seed=1, test_fraction=0.2, validation_fraction=0.1)
    assert a.test.texts == b.test.texts and a.test.texts != c.test.texts
    assert (len(a.train), len(a.validation), len(a.test)) == (70, 10, 20)
    assert not set(a.test.texts) & (set(a.train.texts) | set(a.validation.texts))
    assert a.test.targets[:, 0].sum() == 5  # 25% toxic in the whole, 25% in the test split


def test_write_split_round_trips(tmp_path: Path):
    data = _data(tmp_path)
    test = split_guard_data(data, seed=0, test_fraction=0.2, validation_fraction=0.1).test
    path = write_split(test, tmp_path / "out" / "test.csv")
    again = read_guard_csv(path)
    assert again.texts == test.texts
    np.testing.assert_array_equal(again.targets[:, 0], test.targets[:, 0])


def test_rewire_head_keeps_trained_rows_and_disables_the_rest():
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=1)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 40, (3, 6))
    with torch.no_grad():
        before = model(input_ids=ids).logits.numpy()
    rewire_head(model, [0, None, None, None, None, None])
    with torch.no_grad():
        after = model(input_ids=ids).logits.numpy()
    assert after.shape == (3, 6)
    np.testing.assert_allclose(after[:, 0], before[:, 0], atol=1e-6)
    np.testing.assert_allclose(after[:, 1:], DISABLED_LOGIT)
    assert model.config.id2label == dict(enumerate(CATEGORIES))

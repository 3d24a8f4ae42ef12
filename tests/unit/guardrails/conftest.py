"""Fixtures for the guardrails tests: tiny ONNX models built in the test, a fake clock.

The tiny model is a hand-built ONNX graph (embedding lookup, masked sum), so the tests
need neither torch nor a download and run in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from fairgate.guardrails.contracts import TOXICITY_CATEGORIES


class FakeClock:
    """A clock the test moves by hand: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "idiot", "kill", "you", "nice", "day"]


def _write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(path))


def _write_onnx(path: Path, weights: np.ndarray, with_token_type_ids: bool) -> None:
    onnx = pytest.importorskip("onnx", reason="building the tiny test graph needs the onnx package ([train])")
    from onnx import TensorProto, helper, numpy_helper

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
    ]
    if with_token_type_ids:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"]))
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["gathered"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes"], ["mask3"]),
        helper.make_node("Mul", ["gathered", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "sum_axes"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "emb"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def build_model_dir(
    directory: Path,
    *,
    labels: Sequence[str],
    task: str,
    weights: dict[str, Sequence[float]] | None = None,
    with_token_type_ids: bool = True,
    max_length: int = 16,
) -> Path:
    """Write a complete fairgate model directory (CONTRACTS section 1) with a tiny graph.

    ``weights`` maps a vocabulary word to its logit contribution per label; unnamed words
    (and special tokens) contribute zero, so the logits are a bag-of-words sum.
    """
    directory.mkdir(parents=True, exist_ok=True)
    table = np.zeros((len(VOCAB), len(labels)), dtype=np.float32)
    for word, row in (weights or {}).items():
        table[VOCAB.index(word)] = row
    _write_tokenizer(directory / "tokenizer.json")
    _write_onnx(directory / "model.onnx", table, with_token_type_ids)
    _write_onnx(directory / "model.int8.onnx", table, with_token_type_ids)
    manifest = {
        "format": "fairgate-onnx-text/1",
        "task": task,
        "labels": list(labels),
        "max_length": max_length,
        "files": {"fp32": "model.onnx", "int8": "model.int8.onnx", "tokenizer": "tokenizer.json"},
        "input_names": ["input_ids", "attention_mask", "token_type_ids"],
        "output_name": "logits",
    }
    (directory / "fairgate.json").write_text(json.dumps(manifest), encoding="utf-8")
    (directory / "MODEL_CARD.md").write_text("# tiny test model\n", encoding="utf-8")
    return directory


TOXICITY_LABELS = list(TOXICITY_CATEGORIES)


@pytest.fixture
def model_dir_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def factory(**kwargs: object) -> Path:
        return build_model_dir(tmp_path / f"model{next(counter)}", **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def guard_model_dir(model_dir_factory: Callable[..., Path]) -> Path:
    """A tiny multi-label guard: 'idiot' is an insult, 'kill' a threat, the rest benign.

    [CLS] carries a bias of -4 per category, so benign text scores sigmoid(-4) = 0.018.
    """
    return model_dir_factory(
        labels=TOXICITY_LABELS,
        task="multi_label_classification",
        weights={
            "[CLS]": [-4.0] * 6,
            "idiot": [8.0, 0.0, 0.0, 0.0, 10.0, 0.0],
            "kill": [8.0, 6.0, 0.0, 10.0, 0.0, 0.0],
        },
    )

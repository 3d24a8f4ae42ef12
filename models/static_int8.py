"""Static int8 quantisation of an exported fp32 graph, calibrated on the model's own texts.

Why static: dynamic quantisation computes each activation's scale from the batch it is
in, so a text's score moves with its batch-mates (measured on the stored guard: up to
0.089 toxicity between a text scored alone and inside a batch). Static quantisation
fixes every scale once, from calibration texts, so a text's int8 score is the same
whatever batch it arrives in, and the serving path skips the per-batch
``DynamicQuantizeLinear``.

The calibration texts are the model's own training texts (already normalised the way
serving normalises), never an evaluation set; their fingerprint and the calibration
method are recorded so a build can be reproduced and audited.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fairgate.models.errors import QuantizationError

__all__ = [
    "CALIBRATION_METHODS",
    "KEEP_FP32_SUFFIXES",
    "QUANT_FORMATS",
    "CalibrationMethod",
    "QuantFormat",
    "StaticQuantization",
    "calibration_fingerprint",
    "fp32_matmuls",
    "freeze_dynamic_scales",
    "fused_attention_nodes",
    "quantize_static_file",
    "select_calibration_texts",
]

logger = logging.getLogger(__name__)

CalibrationMethod = Literal["minmax", "entropy", "percentile"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = ("minmax", "entropy", "percentile")
# "integer-ops": the dynamic graph's integer ops (QAttention, MatMulInteger) with every
# DynamicQuantizeLinear replaced by a QuantizeLinear of calibrated, fixed scale; the fused
# Attention's Q/K/V projections are int8 too. "qdq": onnxruntime's quantize_static in QDQ
# format, which has no QDQ form of the fused Attention (Q/K/V stay fp32).
QuantFormat = Literal["integer-ops", "qdq"]
QUANT_FORMATS: tuple[QuantFormat, ...] = ("integer-ops", "qdq")

# The feed-forward down-projections (BERT ``output.dense``, DistilBERT ``ffn.lin2``) read
# post-GELU activations with outliers: with u8 weights, one per-tensor int8 scale for them
# cost the stored classifier 5 points of agreement with fp32 (0.93 vs 0.984 on SST-2 dev),
# with MinMax, Entropy and Percentile alike (docs/models.md, "Static int8"). With AVX2's
# signed 7-bit weights both default models pass the int8 gate with them in int8 too, and
# run about 16% faster, but the guard's identity figures move away from fp32 (benign flag
# rate 0.0072 -> 0.0118, toxic recall 0.9965 -> 0.9882; 0.0082 and 0.9941 with them in
# fp32): a guard that gains speed by losing fairness is not the default. Opt in with
# ``keep_fp32_suffixes=()`` (``fairgate quantize --keep-fp32 none``).
KEEP_FP32_SUFFIXES: tuple[str, ...] = ("/output/dense/MatMul", "/ffn/lin2/MatMul")

# Feeds of one tokenised calibration text: input name -> int64 [1, length].
Feeds = Mapping[str, np.ndarray]


@dataclass(frozen=True, kw_only=True)
class StaticQuantization:
    """How a graph is quantised statically; every field lands in the store metadata.

    Defaults are what measured best on the stored MiniLM models (docs/models.md,
    "Static int8"): the integer-ops format (faster and closer to fp32 than QDQ here),
    per-channel symmetric weights as the target's dynamic config sets them (on AVX2 signed
    7-bit, ``reduce_range``: u8 x s8 in ``vpmaddubsw`` without its int16 saturation; the
    qdq format keeps u8 weights), asymmetric u8 activations, MinMax calibration (as accurate as
    Percentile and Entropy here, and the quickest), every MatMul quantised except the
    ones named in ``keep_fp32_suffixes`` (the FFN down-projections,
    :data:`KEEP_FP32_SUFFIXES`).
    """

    method: CalibrationMethod = "minmax"
    quant_format: QuantFormat = "integer-ops"
    per_channel: bool = True
    percentile: float = 99.999
    max_texts: int = 256
    seed: int = 0
    keep_fp32_suffixes: tuple[str, ...] = KEEP_FP32_SUFFIXES
    # The fused attention (its Q/K/V projections, ``QAttention`` in int8) left in fp32: the
    # build's fallback when the default graph misses the int8 gate (fairgate.models.pipeline).
    # Attention's int8 input scale was what separated SST-2's near-boundary sentences: 0.986
    # -> 0.990 agreement on the issue's recipe (docs/models.md, "Static int8").
    keep_attention_fp32: bool = False
    # AVX2: signed 7-bit weights (the u8 x s8 path) when True, u8 weights when False; the
    # build's dynamic fallback tiers use the same weights (fairgate.models.export).
    avx2_signed_weights: bool = True

    @classmethod
    def for_method(cls, method: CalibrationMethod) -> StaticQuantization:
        """The build's choice: integer-ops with MinMax; the histogram methods need QDQ."""
        return cls(method=method, quant_format="integer-ops" if method == "minmax" else "qdq")

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise QuantizationError(
                f"calibration method {self.method!r} is not one of {', '.join(CALIBRATION_METHODS)}; "
                "pass --calibration-method minmax, entropy or percentile"
            )
        if self.quant_format not in QUANT_FORMATS:
            raise QuantizationError(
                f"static format {self.quant_format!r} is not one of {', '.join(QUANT_FORMATS)}"
            )
        if self.quant_format == "integer-ops" and self.method != "minmax":
            raise QuantizationError(
                f"calibration method {self.method!r} needs the qdq format; the integer-ops format "
                "calibrates with minmax (pass --calibration-method minmax or --static-format qdq)"
            )
        if self.max_texts < 1:
            raise QuantizationError(f"max_texts={self.max_texts} must be at least 1")


def calibration_fingerprint(texts: Sequence[str]) -> str:
    """``sha256:...`` of the calibration texts in order (the texts the ranges came from)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return f"sha256:{digest.hexdigest()}"


def select_calibration_texts(texts: Sequence[str], *, limit: int, seed: int = 0) -> list[str]:
    """A seeded sample of at most ``limit`` non-empty texts (all of them when fewer)."""
    pool = [t for t in texts if t.strip()]
    if not pool:
        raise QuantizationError(
            "static quantisation needs calibration texts and none were given; pass the training "
            "texts (a build does) or --calibration-texts FILE, or use --quantization-mode dynamic"
        )
    if len(pool) <= limit:
        return pool
    return random.Random(seed).sample(pool, limit)


def _padded_feeds(encode: Callable[[list[str]], Feeds], texts: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """One feed per text, every row padded to the longest calibration text.

    The histogram calibrators (entropy, percentile) need tensors of one shape, and padded
    rows are what the served model sees inside batches anyway.
    """
    batch = encode(list(texts))
    return [{name: np.ascontiguousarray(array[i : i + 1]) for name, array in batch.items()} for i in range(len(texts))]


def fp32_matmuls(model_path: Path, suffixes: Sequence[str]) -> list[str]:
    """The MatMul nodes named by ``suffixes`` (outside the attention), to leave in fp32."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and any(node.name.endswith(s) for s in suffixes) and "attention" not in node.name
    ]


def fused_attention_nodes(model_path: Path) -> list[str]:
    """The fused ``Attention`` nodes (ONNX Runtime's optimiser names them ``Attention_N``, so
    they are found by op type, not by a name suffix)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "Attention"]


class _Reader:
    """ONNX Runtime's CalibrationDataReader over prepared feeds (its interface, duck-typed)."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._iter: Iterator[Mapping[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._iter, None)
        return dict(item) if item is not None else None

    def rewind(self) -> None:
        self._iter = iter(self._feeds)

    def __iter__(self) -> Iterator[Mapping[str, np.ndarray]]:
        return iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


def quantize_static_file(
    fp32_path: Path,
    out_path: Path,
    *,
    texts: Sequence[str],
    encode: Callable[[list[str]], Feeds],
    config: StaticQuantization | None = None,
) -> dict[str, Any]:
    """Write the static int8 graph of ``fp32_path`` to ``out_path``; return its description.

    ``texts`` are the calibration texts (already normalised like serving does);
    ``encode`` turns a list of texts into int64 feeds padded to the longest one, keyed by
    the graph's input names. The description (format, method, dtypes, excluded nodes,
    calibration size and fingerprint) goes into the store metadata under
    ``export.quantization``.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    config = config or StaticQuantization()
    chosen = select_calibration_texts(texts, limit=config.max_texts, seed=config.seed)
    feeds = _padded_feeds(encode, chosen)
    kept_fp32 = fp32_matmuls(fp32_path, config.keep_fp32_suffixes)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    reader = _Reader(feeds)
    CalibrationDataReader.register(_Reader)
    extra: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if config.method == "percentile":
        extra["CalibPercentile"] = config.percentile
    logger.info(
        "static int8: calibrating %s on %d texts (%s, %d MatMuls kept in fp32)",
        fp32_path.name,
        len(chosen),
        config.method,
        len(kept_fp32),
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # The calibrator writes its augmented graph next to the working directory's files.
    with contextlib.chdir(out_path.parent), quiet_root_logger():
        ort_quantize_static(
            str(fp32_path),
            str(out_path),
            reader,  # duck-typed CalibrationDataReader (registered above)
            quant_format=QuantFormat.QDQ if config.quant_format == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=["MatMul"],
            per_channel=config.per_channel,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
            nodes_to_exclude=kept_fp32,
            calibrate_method=methods[config.method],
            extra_options=extra,
        )
    return {
        "mode": "static",
        "format": config.quant_format,
        "per_channel": config.per_channel,
        "reduce_range": False,
        "activations_dtype": "QUInt8",
        "activations_symmetric": False,
        "weights_dtype": "QUInt8",
        "weights_symmetric": True,
        "operators": ["MatMul"],
        "fp32_nodes": kept_fp32,
        # ONNX Runtime has no QDQ form of the fused Attention: the qdq format always leaves it fp32.
        "attention_fp32": bool(fused_attention_nodes(fp32_path)),
        "calibration": {
            "method": config.method,
            **({"percentile": config.percentile} if config.method == "percentile" else {}),
            "texts": len(chosen),
            "fingerprint": calibration_fingerprint(chosen),
            "seed": config.seed,
            "padded_to": int(next(iter(feeds[0].values())).shape[1]) if feeds else 0,
        },
    }


def freeze_dynamic_scales(
    dynamic_path: Path,
    out_path: Path,
    *,
    texts: Sequence[str],
    encode: Callable[[list[str]], Feeds],
    config: StaticQuantization | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Turn a dynamic int8 graph static: each ``DynamicQuantizeLinear`` becomes a
    ``QuantizeLinear`` whose scale and zero point come from the calibration texts.

    The ranges (MinMax, over real tokens only: padding rows are masked out) are taken
    from the dynamic graph's own fp32 tensors that feed those nodes; scale and zero
    point follow ``DynamicQuantizeLinear``'s u8 formula, with the range widened to hold 0.
    Every integer op downstream (QAttention, MatMulInteger and its rescaling Mul) reads
    the same names, now constants, so a text's result no longer depends on its batch.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    config = config or StaticQuantization()
    chosen = select_calibration_texts(texts, limit=config.max_texts, seed=config.seed)
    model = onnx.load(str(dynamic_path))
    dynamic = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    if not dynamic:
        raise QuantizationError(f"{dynamic_path} has no DynamicQuantizeLinear node; quantise it dynamically first")
    tensors = sorted({n.input[0] for n in dynamic})
    probe = onnx.load(str(dynamic_path))
    for name in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    low = dict.fromkeys(tensors, 0.0)
    high = dict.fromkeys(tensors, 0.0)
    for start in range(0, len(chosen), batch_size):
        feeds = dict(encode(list(chosen[start : start + batch_size])))
        mask = np.asarray(feeds["attention_mask"]).astype(bool)
        for name, value in zip(tensors, session.run(tensors, feeds), strict=True):
            real = value[mask] if value.ndim == 3 and value.shape[:2] == mask.shape else value
            low[name] = min(low[name], float(real.min()))
            high[name] = max(high[name], float(real.max()))
    nodes = []
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        source = node.input[0]
        quantized, scale_name, zero_name = node.output[0], node.output[1], node.output[2]
        scale = max(high[source] - low[source], 1e-8) / 255.0
        zero_point = int(np.clip(round(-low[source] / scale), 0, 255))
        model.graph.initializer.append(numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name))
        model.graph.initializer.append(numpy_helper.from_array(np.array(zero_point, dtype=np.uint8), zero_name))
        nodes.append(
            helper.make_node("QuantizeLinear", [source, scale_name, zero_name], [quantized], name=f"{node.name}_static")
        )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    logger.info("static int8 (integer-ops): fixed the scales of %d activations from %d texts", len(tensors), len(chosen))
    return {
        "mode": "static",
        "format": "integer-ops",
        "activations_dtype": "QUInt8",
        "activations_symmetric": False,
        "static_activations": len(tensors),
        "calibration": {
            "method": "minmax",
            "texts": len(chosen),
            "fingerprint": calibration_fingerprint(chosen),
            "seed": config.seed,
            "padding": "masked out",
        },
    }


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantiser logs one INFO line per tensor to the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)

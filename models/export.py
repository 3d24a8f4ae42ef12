"""ONNX export through optimum, graph optimisation, int8 quantisation (static or dynamic), parity.

The model directory written here is the seam with serving (docs/CONTRACTS.md section 1):
``model.onnx`` (fp32, graph-optimised), ``model.int8.onnx``, the tokenizer files and
``fairgate.json``, which records the text normalisation the model was trained with so
that serving applies the same one. The manifest's definition, reader and writer are
:mod:`fairgate.guardrails.manifest`, shared with the runtime; this module only fills it
in. Nothing is trusted until :func:`check_parity` has compared both ONNX variants with
the PyTorch model on held-out texts.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fairgate.guardrails.contracts import MULTI_LABEL_TASK, Task
from fairgate.guardrails.domain import EMBEDDING_OUTPUT
from fairgate.guardrails.manifest import DEFAULT_FILES, MANIFEST_FORMAT, ModelManifest, Variant, read_manifest
from fairgate.models.errors import ExportParityError, QuantizationError
from fairgate.models.static_int8 import (
    KEEP_FP32_SUFFIXES,
    StaticQuantization,
    fp32_matmuls,
    freeze_dynamic_scales,
    fused_attention_nodes,
    quantize_static_file,
    quiet_root_logger,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from fairgate.guardrails.normalize import TextNormalization

__all__ = [
    "KEEP_FP32_DEFAULT",
    "KEEP_FP32_FFN",
    "MANIFEST_FORMAT",
    "QUANTIZATION_MODES",
    "ParityReport",
    "QuantizationMode",
    "QuantizationTarget",
    "check_parity",
    "detect_quantization_target",
    "export_model_directory",
    "hf_encoder",
    "read_manifest",
    "write_int8_variant",
    "write_manifest",
]

logger = logging.getLogger(__name__)

QuantizationTarget = Literal["avx512_vnni", "avx512", "avx2", "arm64"]
_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PARITY_VARIANTS: tuple[Variant, ...] = ("fp32", "int8")


@dataclass(frozen=True, kw_only=True)
class ParityReport:
    """How closely the ONNX variants reproduce the PyTorch logits on ``n`` texts."""

    n: int
    fp32_max_abs_diff: float
    fp32_label_agreement: float
    int8_max_abs_diff: float
    int8_label_agreement: float
    fp32_tolerance: float
    int8_min_agreement: float

    @property
    def passed(self) -> bool:
        return (
            self.fp32_max_abs_diff <= self.fp32_tolerance
            and self.int8_label_agreement >= self.int8_min_agreement
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# The serving fleet is AVX2 + FMA without AVX-512. A model quantised with the VNNI config
# (no reduced range) can saturate its u8 x s8 products on AVX2-only hosts, so the default
# is the AVX2 config, which runs correctly everywhere; ``auto`` matches the build host.
DEFAULT_QUANTIZATION_TARGET: QuantizationTarget = "avx2"


def detect_quantization_target(cpuinfo: str | None = None) -> QuantizationTarget:
    """The optimum quantisation config that matches this CPU (from /proc/cpuinfo flags).

    Order of preference: avx512_vnni, avx512 (avx512f), avx2; ARM machines get arm64.
    """
    machine = platform.machine().lower()
    if cpuinfo is None:
        if machine in {"aarch64", "arm64"}:
            return "arm64"
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            logger.warning("cannot read /proc/cpuinfo; assuming AVX2 for int8 quantisation")
            return "avx2"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[-1].split())
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if "asimd" in flags:
        return "arm64"
    return "avx2"


# ONNX Runtime's CPU SkipLayerNormalization (residual add + LayerNorm in one op) was the
# slowest op per element in the int8 MiniLM graphs: 13-15% of a batch's time, against 4%
# for the plain Add and LayerNormalization it replaces (ORT 1.31, AVX2, SST-2 dev batches
# of 16, one thread; docs/models.md "Int8 speed"). The export leaves it unfused.
UNFUSED_SKIP_LAYER_NORM = True

# The feed-forward down-projections (BERT ``output.dense``, DistilBERT ``ffn.lin2``) read
# post-GELU activations whose outliers ruin a per-tensor dynamic int8 scale; the same
# suffixes static int8 keeps in fp32 by default.
KEEP_FP32_DEFAULT = KEEP_FP32_SUFFIXES
# The last resort of a build's int8 fallback: both FFN projections in fp32 (attention and
# its projections stay int8). On the classifier's default recipe on SST-2 (5,000 sentences)
# static and dynamic int8 agreed with PyTorch on 0.982 of the 500 validation sentences
# (gate 0.99), this on 0.986: closer, still short there (docs/models.md).
KEEP_FP32_FFN = (*KEEP_FP32_DEFAULT, "/intermediate/dense/MatMul", "/ffn/lin1/MatMul")


# optimum's AVX2 config stores u8 weights (u8 x u8 products, MLAS's slower 16-bit path);
# signed 7-bit weights (``reduce_range``) take the u8 x s8 ``vpmaddubsw`` path without its
# int16 saturation, as ONNX Runtime advises for x86 without VNNI. Measured on the stored
# MiniLM models (static, FFN down-projections fp32, SST-2 dev, batch 16, one thread): 11.6
# -> 10.2 CPU ms per text for the classifier, and int8 label agreement with fp32 up, 0.992
# -> 0.998 on the bundled reviews, 0.976 -> 0.987 on SST-2 dev (docs/models.md "Int8 speed").
AVX2_WEIGHTS_DTYPE = "QInt8"
AVX2_REDUCE_RANGE = True


def _quantization_config(target: QuantizationTarget, *, exclude: list[str], signed_weights: bool = True):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    factory = getattr(AutoQuantizationConfig, target)
    # Dynamic quantisation: no calibration data, activations quantised on the fly.
    # Measured on the default build (bundled MiniLM + reviews), int8 label agreement with
    # PyTorch on validation/test: per-tensor 0.965/-, per-channel 0.986/0.972, per-channel
    # with the FFN down-projections in fp32 1.000/0.993. Parity needs >= 0.99.
    config = factory(is_static=False, per_channel=True, nodes_to_exclude=exclude)
    if target == "avx2" and signed_weights:
        from onnxruntime.quantization import QuantType

        config = replace(config, weights_dtype=QuantType[AVX2_WEIGHTS_DTYPE], reduce_range=AVX2_REDUCE_RANGE)
    return config


QuantizationMode = Literal["static", "dynamic"]
QUANTIZATION_MODES: tuple[QuantizationMode, ...] = ("static", "dynamic")


def hf_encoder(tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> Callable[[list[str]], dict[str, np.ndarray]]:
    """Texts -> int64 feeds padded to the longest text, as the exported graph takes them."""

    def encode(texts: list[str]) -> dict[str, np.ndarray]:
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="np")
        arrays = {k: np.asarray(enc[k], dtype=np.int64) for k in _ONNX_INPUTS if k in enc}
        arrays.setdefault("token_type_ids", np.zeros_like(arrays["input_ids"]))
        return arrays

    return encode


def write_int8_variant(
    model_dir: Path,
    *,
    mode: QuantizationMode,
    target: QuantizationTarget = DEFAULT_QUANTIZATION_TARGET,
    calibration_texts: Sequence[str] | None = None,
    encode: Callable[[list[str]], Mapping[str, np.ndarray]] | None = None,
    static: StaticQuantization | None = None,
    keep_fp32: Sequence[str] = KEEP_FP32_DEFAULT,
) -> dict[str, Any]:
    """(Re)write ``model_dir``'s int8 graph from its fp32 graph; return the quantisation record.

    ``keep_fp32``: suffixes of the MatMul nodes dynamic int8 leaves in fp32 (default: the
    FFN down-projections, :data:`KEEP_FP32_DEFAULT`; :data:`KEEP_FP32_FFN` keeps both FFN projections).
    The AVX2 weights (signed 7-bit or u8) and whether the fused attention stays fp32 are
    ``static.avx2_signed_weights`` (default signed) and ``static.keep_attention_fp32``
    (default no) in either mode, so every tier of a build uses the same weights.

    Separate from the export so that a build can retry with the other mode when one fails
    parity, and so that ``fairgate quantize`` can re-quantise a stored model. ``encode``
    must return feeds keyed by the graph's input names (only those the graph takes are
    passed on).
    """
    model_dir = Path(model_dir)
    fp32_path, int8_path = model_dir / DEFAULT_FILES["fp32"], model_dir / DEFAULT_FILES["int8"]
    config = static or StaticQuantization()
    if mode == "static":
        if encode is None or not calibration_texts:
            raise QuantizationError(
                "static int8 needs calibration texts (the model's training texts); pass "
                "--calibration-texts FILE or use --quantization-mode dynamic"
            )
        wanted = set(_onnx_input_names(fp32_path))
        encoder = encode

        def feeds(texts: list[str]) -> dict[str, np.ndarray]:
            return {k: v for k, v in encoder(texts).items() if k in wanted}

        with tempfile.TemporaryDirectory(prefix="fairgate-static-int8-") as scratch:
            out = Path(scratch) / "model_int8.onnx"
            if config.quant_format == "integer-ops":
                dynamic_record = _write_dynamic_int8(
                    fp32_path,
                    Path(scratch) / "dynamic.onnx",
                    target,
                    config.keep_fp32_suffixes,
                    signed_weights=config.avx2_signed_weights,
                    attention_fp32=config.keep_attention_fp32,
                )
                record = {
                    **dynamic_record,
                    **freeze_dynamic_scales(
                        Path(scratch) / "dynamic.onnx", out, texts=calibration_texts, encode=feeds, config=config
                    ),
                }
            else:
                record = quantize_static_file(fp32_path, out, texts=calibration_texts, encode=feeds, config=config)
            shutil.copyfile(out, int8_path)
        return record
    if mode != "dynamic":
        raise QuantizationError(f"quantization mode {mode!r} is not one of {', '.join(QUANTIZATION_MODES)}")
    return _write_dynamic_int8(
        fp32_path,
        int8_path,
        target,
        keep_fp32,
        signed_weights=config.avx2_signed_weights,
        attention_fp32=config.keep_attention_fp32,
    )


def _write_dynamic_int8(
    fp32_path: Path,
    int8_path: Path,
    target: QuantizationTarget,
    keep_fp32: Sequence[str] = KEEP_FP32_DEFAULT,
    *,
    signed_weights: bool = True,
    attention_fp32: bool = False,
) -> dict[str, Any]:
    from optimum.onnxruntime import ORTQuantizer

    with tempfile.TemporaryDirectory(prefix="fairgate-dynamic-int8-") as scratch_name:
        scratch = Path(scratch_name)
        src, q_dir = scratch / "src", scratch / "int8"
        src.mkdir()
        shutil.copyfile(fp32_path, src / "model.onnx")
        config = fp32_path.parent / "config.json"
        if config.exists():
            shutil.copyfile(config, src / "config.json")
        quantizer = ORTQuantizer.from_pretrained(src, file_name="model.onnx")
        # The attention kept is what the graph has, not what was asked: maybe no fused node.
        attention = fused_attention_nodes(src / "model.onnx") if attention_fp32 else []
        kept_fp32 = fp32_matmuls(src / "model.onnx", keep_fp32) + attention
        qconfig = _quantization_config(target, exclude=kept_fp32, signed_weights=signed_weights)
        with quiet_root_logger():  # onnxruntime logs one INFO line per tensor to the root logger
            quantizer.quantize(quantization_config=qconfig, save_dir=q_dir, file_suffix="int8")
        shutil.copyfile(q_dir / "model_int8.onnx", int8_path)
    return {
        "mode": "dynamic",
        "per_channel": bool(qconfig.per_channel),
        "reduce_range": bool(qconfig.reduce_range),
        "activations_dtype": str(qconfig.activations_dtype.name),
        "weights_dtype": str(qconfig.weights_dtype.name),
        "operators": list(qconfig.operators_to_quantize),
        "fp32_nodes": kept_fp32,
        "attention_fp32": bool(attention),
    }


def write_manifest(
    directory: Path,
    *,
    task: Task,
    labels: list[str],
    max_length: int,
    input_names: list[str],
    output_name: str = "logits",
    normalization: TextNormalization | None = None,
    embedding_output: str | None = None,
) -> dict[str, Any]:
    """Write ``fairgate.json`` (the runtime's only required metadata) and return it.

    The files are the exporter's (``DEFAULT_FILES``). ``normalization`` is the text
    normalisation the model was trained and evaluated with; it is recorded under
    ``normalization`` and serving applies it before tokenising. ``None`` writes no entry,
    which serving reads as no normalisation. The manifest is checked by the same model
    the runtime reads it with (:class:`~fairgate.guardrails.manifest.ModelManifest`), so
    nothing is written that serving would refuse.
    """
    fields: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "task": task,
        "labels": list(labels),
        "max_length": int(max_length),
        "files": dict(DEFAULT_FILES),
        "input_names": list(input_names),
        "output_name": output_name,
    }
    if normalization is not None:
        fields["normalization"] = normalization.to_manifest()
    if embedding_output is not None:
        fields["embedding_output"] = embedding_output
    manifest = ModelManifest.model_validate(fields)
    manifest.write(Path(directory))
    return manifest.as_json()


def export_model_directory(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    output: Path,
    *,
    task: Task,
    labels: list[str],
    max_length: int,
    quantization: QuantizationTarget | Literal["auto"] = DEFAULT_QUANTIZATION_TARGET,
    optimization_level: int = 2,
    opset: int | None = None,
    normalization: TextNormalization | None = None,
    quantization_mode: QuantizationMode = "dynamic",
    calibration_texts: Sequence[str] | None = None,
    static: StaticQuantization | None = None,
    embedding_output: bool = False,
) -> dict:
    """Export ``model`` to a fairgate model directory at ``output`` (created, must be empty).

    ``normalization``: the text normalisation applied to the training and evaluation
    texts; recorded in ``fairgate.json`` so serving applies it (``None``: none recorded).

    optimum's ``main_export`` writes the fp32 graph; ``ORTOptimizer`` fuses it (level 2:
    attention, LayerNorm, GELU fusions for CPU; residual adds stay unfused, see
    :data:`UNFUSED_SKIP_LAYER_NORM`); :func:`write_int8_variant` writes the int8
    variant: ``quantization_mode="static"`` calibrates on ``calibration_texts`` (the
    training texts, normalised) with ``static``'s settings, ``"dynamic"`` uses optimum's
    dynamic config of this CPU. ``embedding_output`` adds the pooled embedding the head
    reads as a second graph output (:mod:`fairgate.models.embedding_output`), for the
    domain-shift monitor; the manifest names it. Returns a description of the export for the
    store metadata (quantisation target and config, optimisation level, file sizes).
    """
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    target = detect_quantization_target() if quantization == "auto" else quantization
    with tempfile.TemporaryDirectory(prefix="fairgate-export-") as scratch_name:
        scratch = Path(scratch_name)
        hf_dir, onnx_dir, opt_dir = (scratch / n for n in ("hf", "onnx", "opt"))
        model.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        main_export(
            str(hf_dir),
            output=onnx_dir,
            task="text-classification",
            opset=opset,
            do_validation=False,  # our own parity check below is stricter and on real texts
            library_name="transformers",
            local_files_only=True,
        )
        embedding_source = None
        if embedding_output:
            from fairgate.models.embedding_output import add_embedding_output

            embedding_source = add_embedding_output(onnx_dir / "model.onnx")
        optimizer = ORTOptimizer.from_pretrained(onnx_dir)
        optimization = OptimizationConfig(
            optimization_level=optimization_level,
            optimize_for_gpu=False,
            disable_skip_layer_norm_fusion=UNFUSED_SKIP_LAYER_NORM,
        )
        optimizer.optimize(optimization_config=optimization, save_dir=opt_dir, file_suffix=None)
        # The fused graph uses contrib ops (Attention, BiasGelu) that plain
        # ONNX shape inference cannot type; ORT's symbolic shape inference can, and the
        # quantizer needs every MatMul output typed.
        _infer_shapes(opt_dir / "model.onnx", opt_dir / "model.onnx")
        shutil.copyfile(opt_dir / "model.onnx", output / DEFAULT_FILES["fp32"])
    tokenizer.save_pretrained(output)
    model.config.save_pretrained(output)
    quantization_record = write_int8_variant(
        output,
        mode=quantization_mode,
        target=target,
        calibration_texts=calibration_texts,
        encode=hf_encoder(tokenizer, max_length=max_length),
        static=static,
    )
    input_names = _onnx_input_names(output / DEFAULT_FILES["fp32"])
    manifest = write_manifest(
        output,
        task=task,
        labels=labels,
        max_length=max_length,
        input_names=input_names,
        normalization=normalization,
        embedding_output=EMBEDDING_OUTPUT if embedding_output else None,
    )
    return {
        "embedding_output": (
            {"name": EMBEDDING_OUTPUT, "source": embedding_source} if embedding_source is not None else None
        ),
        "quantization_target": target,
        "quantization": quantization_record,
        "optimization_level": optimization_level,
        "skip_layer_norm_fused": not UNFUSED_SKIP_LAYER_NORM,
        "input_names": input_names,
        "normalization": manifest.get("normalization"),
        "sizes_bytes": {
            "fp32": (output / DEFAULT_FILES["fp32"]).stat().st_size,
            "int8": (output / DEFAULT_FILES["int8"]).stat().st_size,
        },
    }


def _infer_shapes(source: Path, target: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ORT's symbolic shape inference writes ``sym_shape_infer_temp.onnx`` (and external
    # data files) into the working directory: run it inside the scratch directory.
    with contextlib.chdir(target.parent):
        quant_pre_process(str(source), str(target), skip_optimization=True, auto_merge=True)


def _onnx_input_names(path: Path) -> list[str]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [i.name for i in session.get_inputs()]


def _decisions(logits: np.ndarray, task: str) -> np.ndarray:
    if task == MULTI_LABEL_TASK:
        return logits > 0.0  # sigmoid(x) > 0.5
    return logits.argmax(axis=1)


def check_parity(
    *,
    torch_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: Path,
    texts: list[str],
    task: str,
    max_length: int,
    fp32_tolerance: float = 1e-3,
    int8_min_agreement: float = 0.99,
    batch_size: int = 32,
    raise_on_failure: bool = True,
) -> ParityReport:
    """Compare ONNX fp32 and int8 logits with PyTorch on the same token ids.

    fp32 must match within ``fp32_tolerance`` (max |logit difference|); int8 must agree
    on the label (argmax, or each sigmoid decision for multi-label) for at least
    ``int8_min_agreement`` of the texts. Raises :class:`ExportParityError` otherwise.
    """
    import onnxruntime as ort
    import torch

    if not texts:
        raise ExportParityError("parity check needs at least one text (the validation split is empty)")
    manifest = read_manifest(model_dir)  # the files and output the runtime will load
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = {
        variant: ort.InferenceSession(
            str(manifest.resolve_files(Path(model_dir), variant)[0]),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        for variant in _PARITY_VARIANTS
    }
    wanted = {v: [i.name for i in s.get_inputs()] for v, s in sessions.items()}
    torch_model.eval()
    reference, outputs = [], {"fp32": [], "int8": []}
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="np",
        )
        arrays = {k: np.asarray(enc[k], dtype=np.int64) for k in _ONNX_INPUTS if k in enc}
        if "token_type_ids" not in arrays:
            arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
        with torch.inference_mode():
            torch_inputs = {
                k: torch.from_numpy(v) for k, v in arrays.items() if k in enc
            }
            reference.append(torch_model(**torch_inputs).logits.float().numpy())
        for variant, session in sessions.items():
            feed = {name: arrays[name] for name in wanted[variant]}
            outputs[variant].append(session.run([manifest.output_name], feed)[0].astype(np.float32))
    ref = np.concatenate(reference)
    fp32 = np.concatenate(outputs["fp32"])
    int8 = np.concatenate(outputs["int8"])
    ref_labels = _decisions(ref, task)
    report = ParityReport(
        n=len(texts),
        fp32_max_abs_diff=float(np.max(np.abs(fp32 - ref))),
        fp32_label_agreement=float(np.mean(_decisions(fp32, task) == ref_labels)),
        int8_max_abs_diff=float(np.max(np.abs(int8 - ref))),
        int8_label_agreement=float(np.mean(_decisions(int8, task) == ref_labels)),
        fp32_tolerance=fp32_tolerance,
        int8_min_agreement=int8_min_agreement,
    )
    logger.info(
        "parity on %d texts: fp32 max|diff| %.2e, int8 agreement %.4f",
        report.n,
        report.fp32_max_abs_diff,
        report.int8_label_agreement,
    )
    if raise_on_failure and not report.passed:
        problems = []
        if report.fp32_max_abs_diff > fp32_tolerance:
            problems.append(
                f"fp32 max |logit difference| {report.fp32_max_abs_diff:.3g} exceeds the "
                f"tolerance {fp32_tolerance:g}"
            )
        if report.int8_label_agreement < int8_min_agreement:
            problems.append(
                f"int8 label agreement {report.int8_label_agreement:.4f} is below "
                f"{int8_min_agreement:.4f}"
            )
        raise ExportParityError(
            f"ONNX export of {model_dir} failed parity on {report.n} validation texts: "
            + "; ".join(problems)
            + ". Nothing was stored; re-run the export (or loosen --parity-tolerance / "
            "--int8-min-agreement if the difference is understood)"
        )
    return report

"""Learning curves: what transfer learning buys over a model trained from scratch.

``fairgate report transfer`` (or ``fairgate build classifier --learning-curve``) scores, on
one fixed test split, three ways of learning from ``n`` labelled examples for several
``n``: fine-tuning the pretrained encoder, feature extraction (the frozen encoder's pooled
embedding + logistic regression, :mod:`fairgate.models.feature_extraction`) and a
from-scratch baseline (TF-IDF word 1-2-grams + logistic regression). Each point is the
mean over seeds (each seed draws its own stratified, nested subsets; fine-tuning also
reseeds the head and the batches) with its standard deviation.

For speed the fine-tuning points train for a fixed, small number of epochs (at least
``min_steps`` optimiser steps on small subsets) with no held-out validation: the state with
the lowest training loss, measured once per epoch, is kept. The table says how many epochs
each point had. The scores are the PyTorch model's (the learning curve measures the recipe,
not the export).

When fine-tuning does not beat the baseline's macro-F1 at the full size, the result carries
a negative-transfer warning (logged, and in the card and table).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fairgate.models.datasets import LabelledData, _stratified_order

if TYPE_CHECKING:
    from fairgate.models.encoder import EncoderSource
    from fairgate.models.finetune import FinetuneConfig

__all__ = [
    "METHODS",
    "CurveOptions",
    "learning_curve_section",
    "markdown_table",
    "negative_transfer",
    "parse_sizes",
    "plot_learning_curve",
    "run_learning_curve",
    "write_learning_curve",
]

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("finetune", "feature-extraction", "feature-extraction-mean", "tfidf")
DEFAULT_METHODS: tuple[str, ...] = METHODS
# Short column names for the table (the legend line spells them out).
SHORT_NAMES = {"finetune": "fine-tune", "feature-extraction": "frozen+LR", "feature-extraction-mean": "frozen mean+LR",
               "tfidf": "TF-IDF+LR"}
METHOD_NAMES = {
    "finetune": "fine-tuning",
    "feature-extraction": "feature extraction (frozen encoder + LR)",
    "feature-extraction-mean": "feature extraction, mean-pooled (not exported)",
    "tfidf": "from scratch (TF-IDF + LR)",
}
DEFAULT_SIZES: tuple[int | None, ...] = (50, 100, 200, 500, 1000, None)  # None: all
PLOT_FILE = "learning_curve.png"
TABLE_FILE = "learning_curve.md"
JSON_FILE = "learning_curve.json"


def parse_sizes(text: str) -> tuple[int | None, ...]:
    """``"50,100,all"`` -> ``(50, 100, None)``."""
    sizes: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            sizes.append(None)
            continue
        value = int(part)
        if value < 2:
            raise ValueError(f"learning-curve size {value} is below 2")
        sizes.append(value)
    if not sizes:
        raise ValueError("no learning-curve sizes given")
    return tuple(sizes)


@dataclass(frozen=True, kw_only=True)
class CurveOptions:
    """What to measure: sizes (``None`` = the whole pool), seeds, methods, and the fine-tuning budget."""

    sizes: tuple[int | None, ...] = DEFAULT_SIZES
    seeds: int = 3
    first_seed: int = 0
    methods: tuple[str, ...] = DEFAULT_METHODS
    finetune_epochs: int = 2
    min_steps: int = 30
    max_epochs: int = 20
    batch_size: int = 64


@dataclass(kw_only=True)
class _Runs:
    scores: dict[tuple[str, int], list[dict[str, float]]] = field(default_factory=dict)
    epochs: dict[int, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _resolve_sizes(sizes: Sequence[int | None], pool: int) -> list[int]:
    out = sorted({pool if s is None else min(s, pool) for s in sizes})
    return [s for s in out if s >= 2]


def _finetune_epochs(n: int, options: CurveOptions, batch_size: int) -> int:
    steps_per_epoch = math.ceil(n / batch_size)
    wanted = max(options.finetune_epochs, math.ceil(options.min_steps / steps_per_epoch))
    return int(min(options.max_epochs, wanted))


def _metrics(targets: np.ndarray, logits: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    from fairgate.models.evaluation import classification_metrics, probabilities

    report = classification_metrics(targets=targets, probs=probabilities(logits, "single_label_classification"),
                                     labels=labels)
    return {"accuracy": float(report["accuracy"]), "macro_f1": float(report["macro_f1"])}


def _tfidf_scores(train: LabelledData, test: LabelledData, seed: int) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from fairgate.models.feature_extraction import fit_linear_head

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(train.texts)  # sparse: n x vocabulary
    x_test = vectorizer.transform(test.texts)
    head = fit_linear_head(x_train, train.targets, n_labels=len(train.labels), seed=seed)
    return _metrics(test.targets, head.logits(x_test), train.labels)


def run_learning_curve(
    *,
    pool: LabelledData,
    test: LabelledData,
    encoder: EncoderSource,
    finetune_config: FinetuneConfig,
    options: CurveOptions = CurveOptions(),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every method at every size for every seed; returns the JSON-ready result.

    ``pool`` is where the training subsets are drawn from (already normalised as the build
    trains), ``test`` the fixed test split (same normalisation). ``finetune_config`` is the
    build's recipe; its epochs and early stopping are replaced as the module docstring says.
    """
    from fairgate.models.encoder import load_sequence_classifier, load_tokenizer
    from fairgate.models.feature_extraction import fit_linear_head, pooled_features
    from fairgate.models.finetune import finetune, predict_logits, seed_everything

    if pool.task != "single_label_classification":
        raise ValueError("learning curves are implemented for single-label classification")
    unknown = set(options.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown learning-curve methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    say = progress or (lambda message: logger.info("%s", message))
    labels = list(pool.labels)
    sizes = _resolve_sizes(options.sizes, len(pool))
    seeds = [options.first_seed + i for i in range(options.seeds)]
    runs = _Runs()
    tokenizer = load_tokenizer(encoder)
    max_length = finetune_config.max_length
    started = time.perf_counter()

    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method, pooling in (("feature-extraction", "head"), ("feature-extraction-mean", "mean")):
        if method not in options.methods:
            continue
        t0 = time.perf_counter()
        frozen = load_sequence_classifier(encoder, labels=labels)
        features[method] = (
            pooled_features(frozen, tokenizer, pool.texts, max_length=max_length, batch_size=options.batch_size,
                            pooling=pooling),
            pooled_features(frozen, tokenizer, test.texts, max_length=max_length, batch_size=options.batch_size,
                            pooling=pooling),
        )
        del frozen
        runs.seconds[method] = time.perf_counter() - t0
        say(f"{pooling}-pooled embeddings of {len(pool)} + {len(test)} texts in {runs.seconds[method]:.0f}s")

    for seed in seeds:
        order = _stratified_order(pool.targets, np.random.default_rng(seed))
        for n in sizes:
            idx = np.sort(order[:n])
            subset = pool.subset(idx)
            if len(np.unique(subset.targets)) < 2:
                say(f"seed {seed} size {n}: one class only, skipped")
                continue
            if "tfidf" in options.methods:
                t0 = time.perf_counter()
                runs.scores.setdefault(("tfidf", n), []).append(_tfidf_scores(subset, test, seed))
                runs.seconds["tfidf"] = runs.seconds.get("tfidf", 0.0) + time.perf_counter() - t0
            for method, (pool_x, test_x) in features.items():
                t0 = time.perf_counter()
                head = fit_linear_head(pool_x[idx], subset.targets, n_labels=len(labels), seed=seed)
                runs.scores.setdefault((method, n), []).append(_metrics(test.targets, head.logits(test_x), labels))
                runs.seconds[method] += time.perf_counter() - t0
            if "finetune" in options.methods:
                t0 = time.perf_counter()
                epochs = _finetune_epochs(n, options, finetune_config.batch_size)
                runs.epochs[n] = epochs
                update: dict[str, Any] = {
                    "epochs": epochs, "early_stopping_patience": 0, "seed": seed, "evaluations_per_epoch": 1,
                }
                if "selection_metric" in type(finetune_config).model_fields:
                    update["selection_metric"] = "loss"  # "validation" is the training subset
                config = finetune_config.model_copy(update=update)
                seed_everything(seed)
                model = load_sequence_classifier(encoder, labels=labels)
                # No held-out data at n examples: "validation" is (up to 256 rows of) the subset
                # itself, so the state kept is the one with the lowest training loss (once per epoch).
                check = subset.subset(np.arange(min(len(subset), 256)))
                finetune_logger = logging.getLogger("fairgate.models.finetune")
                level = finetune_logger.level
                finetune_logger.setLevel(logging.WARNING)  # one line per point, not per epoch
                try:
                    finetune(model, tokenizer, train=subset, validation=check, config=config, progress=False)
                finally:
                    finetune_logger.setLevel(level)
                logits = predict_logits(model, tokenizer, test.texts, max_length=max_length,
                                        batch_size=options.batch_size)
                runs.scores.setdefault(("finetune", n), []).append(_metrics(test.targets, logits, labels))
                del model
                runs.seconds["finetune"] = runs.seconds.get("finetune", 0.0) + time.perf_counter() - t0
            line = ", ".join(
                f"{m} {runs.scores[(m, n)][-1]['macro_f1']:.3f}" for m in options.methods if (m, n) in runs.scores
            )
            say(f"seed {seed} size {n}: macro-F1 {line} ({time.perf_counter() - started:.0f}s)")

    return _summarise(runs, pool=pool, test=test, encoder=encoder, sizes=sizes, seeds=seeds,
                      options=options, finetune_config=finetune_config)


def _stats(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def _summarise(
    runs: _Runs, *, pool: LabelledData, test: LabelledData, encoder: EncoderSource, sizes: list[int],
    seeds: list[int], options: CurveOptions, finetune_config: FinetuneConfig,
) -> dict[str, Any]:
    points = []
    for method in options.methods:
        for n in sizes:
            scores = runs.scores.get((method, n))
            if not scores:
                continue
            point: dict[str, Any] = {
                "method": method,
                "size": n,
                "full": n == len(pool),
                "seeds": len(scores),
                "accuracy": _stats([s["accuracy"] for s in scores]),
                "macro_f1": _stats([s["macro_f1"] for s in scores]),
            }
            if method == "finetune":
                point["epochs"] = runs.epochs.get(n)
            points.append(point)
    result: dict[str, Any] = {
        "pool": {"source": pool.source, "fingerprint": pool.fingerprint, "n": len(pool)},
        "test": {"source": test.source, "fingerprint": test.fingerprint, "n": len(test)},
        "labels": list(pool.labels),
        "base": encoder.describe(),
        "sizes": sizes,
        "seeds": seeds,
        "methods": list(options.methods),
        "finetune": {
            "config": finetune_config.model_dump(exclude={"epochs", "early_stopping_patience", "seed"}),
            "epochs": f"max({options.finetune_epochs}, enough for {options.min_steps} steps), at most "
                      f"{options.max_epochs}; no held-out validation (lowest training loss on up to 256 "
                      "training rows kept)",
        },
        "seconds": {k: round(v, 1) for k, v in runs.seconds.items()},
        "points": points,
    }
    result["warning"] = negative_transfer(result)
    if result["warning"]:
        logger.warning("%s", result["warning"])
    return result


def _point(result: Mapping[str, Any], method: str, size: int) -> Mapping[str, Any] | None:
    for point in result.get("points", []):
        if point["method"] == method and point["size"] == size:
            return point
    return None


def negative_transfer(result: Mapping[str, Any], *, metric: str = "macro_f1") -> str | None:
    """The warning when fine-tuning does not beat the from-scratch baseline at the full size, else None."""
    sizes = result.get("sizes") or []
    if not sizes:
        return None
    full = max(sizes)
    tuned, scratch = _point(result, "finetune", full), _point(result, "tfidf", full)
    if tuned is None or scratch is None:
        return None
    a, b = tuned[metric]["mean"], scratch[metric]["mean"]
    if a > b:
        return None
    return (
        f"NEGATIVE TRANSFER: at the full size ({full} examples) fine-tuning's mean {metric} {a:.4f} does "
        f"not beat the from-scratch TF-IDF baseline's {b:.4f}; the pretrained encoder does not help on "
        "this data (check the base encoder, the data's domain and the recipe)"
    )


def _cell(point: Mapping[str, Any], metric: str) -> str:
    stats = point[metric]
    if point.get("seeds", 2) < 2:
        return f"{stats['mean']:.3f} (1 seed)"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def markdown_table(result: Mapping[str, Any]) -> list[str]:
    """Markdown lines: one row per size, accuracy and macro-F1 (mean ± sd over seeds) per method."""
    from fairgate.models.card import table

    methods = result.get("methods") or []
    header = ["examples"]
    for method in methods:
        header += [f"{SHORT_NAMES[method]} acc", f"{SHORT_NAMES[method]} macro-F1"]
    if "finetune" in methods:
        header.append("fine-tune epochs")
    rows = []
    for n in result.get("sizes") or []:
        row: list[object] = [f"{n} (all)" if n == (result.get("pool") or {}).get("n") else n]
        for method in methods:
            point = _point(result, method, n)
            row += [_cell(point, "accuracy"), _cell(point, "macro_f1")] if point else ["n/a", "n/a"]
        if "finetune" in methods:
            point = _point(result, "finetune", n)
            row.append(point.get("epochs") if point else "n/a")
        rows.append(row)
    seeds = result.get("seeds") or []
    by_method = result.get("seeds_by_method") or {}  # runs merged from different seed counts
    over = (", ".join(f"{SHORT_NAMES[m]} {len(by_method[m])}" for m in methods if m in by_method) + " seeds"
            if by_method else f"{len(seeds)} seeds")
    test = result.get("test") or {}
    lines = [
        f"Mean ± standard deviation over {over}; test: {test.get('source')} ({test.get('n')} texts); "
        f"training pool: {(result.get('pool') or {}).get('source')} ({(result.get('pool') or {}).get('n')} texts); "
        f"base {result.get('base')}.",
        "",
        *table(header, rows),
        "",
        "Methods: " + "; ".join(f"{SHORT_NAMES[m]} = {METHOD_NAMES[m]}" for m in methods) + ".",
    ]
    if "finetune" in methods:
        lines += ["", f"Fine-tuning epochs: {(result.get('finetune') or {}).get('epochs')}."]
    if result.get("warning"):
        lines += ["", f"**Warning:** {result['warning']}"]
    return lines


def plot_learning_curve(result: Mapping[str, Any], path: Path, *, title: str | None = None) -> Path:
    """Accuracy and macro-F1 against the number of examples (log scale), a band of ± one sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for ax, metric, name in zip(axes, ("accuracy", "macro_f1"), ("accuracy", "macro-F1"), strict=True):
        for method in result.get("methods") or []:
            points = sorted((p for p in result["points"] if p["method"] == method), key=lambda p: p["size"])
            if not points:
                continue
            x = np.array([p["size"] for p in points], dtype=float)
            y = np.array([p[metric]["mean"] for p in points])
            sd = np.array([p[metric]["std"] for p in points])
            ax.plot(x, y, marker="o", markersize=3, label=METHOD_NAMES[method])
            ax.fill_between(x, y - sd, y + sd, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("labelled training examples")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or f"Learning curves ({(result.get('test') or {}).get('source')})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_learning_curve(result: Mapping[str, Any], directory: Path, *, title: str | None = None) -> dict[str, Path]:
    """Write the JSON result, the markdown table and the PNG plot into ``directory``."""
    from fairgate.models.store import json_safe

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / JSON_FILE, "table": directory / TABLE_FILE, "plot": directory / PLOT_FILE}
    paths["json"].write_text(json.dumps(json_safe(dict(result)), indent=2) + "\n", encoding="utf-8")
    paths["table"].write_text("\n".join(["# Learning curves", "", *markdown_table(result)]) + "\n", encoding="utf-8")
    plot_learning_curve(result, paths["plot"], title=title)
    return paths


def learning_curve_section(metadata: Mapping[str, Any]) -> list[str]:
    """Model-card section: the table, the plot (``learning_curve.png`` beside the card) and any warning."""
    result = metadata.get("learning_curve")
    if not result:
        return []
    return [
        "## Learning curves (transfer vs from scratch)",
        "",
        *markdown_table(result),
        "",
        f"![learning curves]({PLOT_FILE})",
        "",
    ]


def split_pool_and_test(
    data: LabelledData, *, test: LabelledData | None, seed: int, test_fraction: float = 0.1
) -> tuple[LabelledData, LabelledData]:
    """The training pool and the fixed test split: ``test`` when given, else a seeded stratified split."""
    from fairgate.models.datasets import split_data

    if test is not None:
        return data, test
    parts = split_data(data, seed=seed, validation_fraction=test_fraction, test_fraction=0)
    return parts.train, parts.validation


def normalised(data: LabelledData, normalization: Any) -> LabelledData:
    """``data`` with its texts normalised (the build trains and serves normalised texts)."""
    return replace(data, texts=normalization.apply(data.texts))


@dataclass(frozen=True, kw_only=True)
class BuildCurve:
    """A build's learning curves: the result (metadata) and the files for the model directory."""

    result: dict[str, Any]
    files: dict[str, bytes]


def build_learning_curve(
    config: Any, *, encoder: EncoderSource, pool: LabelledData, test: LabelledData, normalization: Any
) -> BuildCurve:
    """``build classifier --learning-curve``: curves on the build's training split and test split.

    ``pool`` is the build's (normalised) training split, ``test`` its raw test split,
    normalised here as the pool is. The files go into the model directory (the card shows
    the plot) and, when the build names one, into ``config.curve_dir``.
    """
    import tempfile

    options = CurveOptions(**(config.learning_curve or {}))
    logger.info("learning curves: sizes %s, %d seeds", options.sizes, options.seeds)
    result = run_learning_curve(
        pool=pool, test=normalised(test, normalization), encoder=encoder,
        finetune_config=config.finetune, options=options,
    )
    with tempfile.TemporaryDirectory(prefix="fairgate-curve-") as scratch:
        paths = write_learning_curve(result, Path(config.curve_dir) if config.curve_dir else Path(scratch),
                                     title=f"Learning curves: {config.name}")
        files = {PLOT_FILE: paths["plot"].read_bytes(), JSON_FILE: paths["json"].read_bytes()}
    return BuildCurve(result=result, files=files)

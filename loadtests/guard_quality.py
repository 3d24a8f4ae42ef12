"""``python -m loadtests.guard_quality``: the fair-guard figures for one guard, one JSON.

What a moderation product needs to know before trusting a guard, measured on data the guard
never trained on, with the thresholds of a policy (the default policy unless ``--policy``):

- the identity evaluation set (``models/data/identity_eval``, kept apart from training by
  template): benign flag and block rates per group, their spread, the mean counterfactual
  gap, toxic recall at the flag threshold and the Jigsaw bias AUCs;
- real text nobody here wrote, from ``../shared/data`` when present: false blocks and flags
  on SST-2 dev (movie reviews, none abusive) and on the Davidson tweets labelled neither
  hateful nor offensive (``class`` 2), and the ROC AUC of ``toxicity`` on all Davidson
  tweets (toxic = class 0 or 1);
- the held-out per-category ROC AUC the build stored in the model's metadata, and, with
  ``--heldout CSV`` (a split written by ``fairgate build guard --test-split-out``), the
  per-category AUC on those rows, so two guards can be compared on the same rows.

A decision follows the policy: block when any category's score reaches its ``block``
threshold, else flag when any reaches its ``flag`` threshold.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
IDENTITY_EVAL = REPO_ROOT / "models" / "data" / "identity_eval" / "identity_eval.csv"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

logger = logging.getLogger("loadtests.guard_quality")


def decisions(scores: np.ndarray, thresholds: dict[int, tuple[float | None, float | None]]) -> np.ndarray:
    """Per row: 2 = block, 1 = flag, 0 = allow, from ``{category index: (flag, block)}``."""
    out = np.zeros(len(scores), dtype=np.int8)
    for column, (flag, block) in thresholds.items():
        if flag is not None:
            out = np.maximum(out, np.where(scores[:, column] >= flag, 1, 0).astype(np.int8))
        if block is not None:
            out = np.maximum(out, np.where(scores[:, column] >= block, 2, 0).astype(np.int8))
    return out


def rates(actions: np.ndarray) -> dict[str, float | int]:
    return {
        "n": len(actions),
        "blocked": float(np.mean(actions == 2)) if len(actions) else float("nan"),
        "flagged": float(np.mean(actions == 1)) if len(actions) else float("nan"),
        "flagged_or_blocked": float(np.mean(actions >= 1)) if len(actions) else float("nan"),
    }


def _read_sst2(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [row["sentence"] for row in csv.DictReader(handle, delimiter="\t")]


def _read_davidson(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row["tweet"] for row in rows], np.asarray([int(row["class"]) for row in rows])


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def measure(
    *,
    guard_tag: str,
    policy_path: Path | None,
    shared: Path,
    heldout: Path | None,
    model_dir: Path | None = None,
) -> dict[str, Any]:
    import pandas as pd

    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.guardrails.policy import TOXICITY_CATEGORIES, Policy, default_policy_path
    from fairgate.models.guard.evaluation import score_texts
    from fairgate.models.guard.fairness import identity_report, policy_toxicity_thresholds
    from fairgate.models.store import get_stored_model

    if model_dir is not None:  # a directory outside the store (e.g. --rejected-out)
        metadata_file = model_dir / "metadata.json"
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
        stored = SimpleNamespace(tag=str(model_dir), path=model_dir, metadata=metadata)
    else:
        stored = get_stored_model(guard_tag)
    model = OnnxTextModel.from_directory(stored.path, variant="int8")
    policy = Policy.from_yaml(policy_path or default_policy_path())
    thresholds = {
        TOXICITY_CATEGORIES.index(name): (t.flag, t.block)
        for name, t in policy.toxicity.categories.items()
    }
    flag_at, block_at = policy_toxicity_thresholds(policy)
    report: dict[str, Any] = {
        "guard": stored.tag,
        "policy": str(policy_path or default_policy_path()),
        "policy_version": policy.version,
        "thresholds": {n: t.model_dump() for n, t in policy.toxicity.categories.items()},
    }

    frame = pd.read_csv(IDENTITY_EVAL)
    scores = score_texts(model, frame["text"].tolist())
    toxic = frame["toxic"].astype(int).to_numpy() == 1
    identity = identity_report(
        scores[:, 0],
        groups=frame["group"].tolist(),
        templates=frame["template_id"].tolist(),
        toxic=toxic,
        flag_threshold=flag_at,
        block_threshold=block_at,
    )
    actions = decisions(scores, thresholds)
    report["identity_eval"] = {
        "data": str(IDENTITY_EVAL.relative_to(REPO_ROOT)),
        "report": identity.as_dict(),
        "policy_benign": rates(actions[~toxic]),
        "policy_toxic_caught": float(np.mean(actions[toxic] >= 1)),
    }

    sst2 = shared / "sst2" / "dev.tsv"
    if sst2.is_file():
        texts = _read_sst2(sst2)
        report["sst2_dev"] = rates(decisions(score_texts(model, texts), thresholds))
    davidson = shared / "davidson_labeled_data.csv"
    if davidson.is_file():
        texts, classes = _read_davidson(davidson)
        dscores = score_texts(model, texts)
        report["davidson"] = {
            "neither_class_2": rates(decisions(dscores[classes == 2], thresholds)),
            "toxicity_roc_auc_class_0_or_1": _auc(dscores[:, 0], classes != 2),
            "n": len(texts),
        }
    if not sst2.is_file() and not davidson.is_file():
        report["real_data"] = f"not found at {shared}: real-data figures skipped"

    evaluation = stored.metadata.get("evaluation", {})
    report["stored_heldout_roc_auc"] = {
        name: row.get("roc_auc") for name, row in evaluation.get("per_category", {}).items()
    }
    if heldout is not None:
        held = pd.read_csv(heldout)
        hscores = score_texts(model, held["text"].astype(str).tolist())
        report["heldout_roc_auc"] = {
            name: _auc(hscores[:, TOXICITY_CATEGORIES.index(name)], held[name].to_numpy() >= 0.5)
            for name in TOXICITY_CATEGORIES
            if name in held.columns
        }
        report["heldout_data"] = str(heldout)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.guard_quality", description=__doc__.split("\n")[0])
    parser.add_argument("--guard-tag", default="fairgate-toxicity:latest")
    parser.add_argument("--model-dir", type=Path, help="a guard's model directory instead of a store tag")
    parser.add_argument("--policy", type=Path, help="policy YAML (default: the bundled default policy)")
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA)
    parser.add_argument("--heldout", type=Path, help="a held-out split CSV to score (text + category columns)")
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = measure(
        guard_tag=args.guard_tag,
        policy_path=args.policy,
        shared=args.shared_data,
        heldout=args.heldout,
        model_dir=args.model_dir,
    )
    text = json.dumps(report, indent=2, default=str)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

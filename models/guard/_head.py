"""Rewire the rows of a classification head: pick, reorder, or disable outputs.

Both ends of the guard need it: a Detoxify checkpoint has more outputs than the guard
(or in another order), and a model trained on a CSV that labels only some categories
has fewer. Editing the final ``nn.Linear`` row by row keeps every kept logit
bit-identical, so the exported graph has exactly the contract's six outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fairgate.models.guard._categories import CATEGORIES

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel

# A category the model was never trained on answers sigmoid(-12) ~ 6e-6: "not detected",
# rather than the 0.5 an untrained row would give (which every policy would flag).
DISABLED_LOGIT = -12.0


def find_head(model: PreTrainedModel) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` under ``classifier`` with ``num_labels`` outputs."""
    from torch import nn

    num_outputs = int(model.config.num_labels)
    heads = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and module.out_features == num_outputs
        and name.split(".")[0] == "classifier"
    ]
    if not heads:
        raise LookupError(
            f"no classification head (a 'classifier' linear layer with {num_outputs} "
            f"outputs) in {type(model).__name__}"
        )
    return heads[-1]


def rewire_head(model: PreTrainedModel, rows: Sequence[int | None]) -> PreTrainedModel:
    """Make output ``i`` the old output ``rows[i]``, or a constant "no" where it is None.

    The model becomes a six-label multi-label model over CATEGORIES (``rows`` has one
    entry per category).
    """
    import torch
    from torch import nn

    if len(rows) != len(CATEGORIES):
        raise ValueError(f"need one row per category ({len(CATEGORIES)}), got {len(rows)}")
    name, head = find_head(model)
    new = nn.Linear(head.in_features, len(rows), bias=True)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.fill_(DISABLED_LOGIT)
        for i, row in enumerate(rows):
            if row is None:
                continue
            new.weight[i] = head.weight[row]
            new.bias[i] = head.bias[row] if head.bias is not None else 0.0
    new.to(dtype=head.weight.dtype)
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attribute, new)
    model.num_labels = len(CATEGORIES)
    model.config.num_labels = len(CATEGORIES)
    model.config.id2label = dict(enumerate(CATEGORIES))
    model.config.label2id = {label: i for i, label in enumerate(CATEGORIES)}
    model.config.problem_type = "multi_label_classification"
    return model

"""Expose the pooled sentence embedding as a second output of an exported classifier graph.

The domain-shift monitor (:mod:`fairgate.guardrails.domain_monitor`) scores the vector the
classification head reads: for BERT-style models the pooler's output, for DistilBERT the
``pre_classifier`` activation. Reading it from the same session run as the logits means
serving pays no second forward pass. optimum exports only ``logits``, so the exporter
adds the output here, on the plain export and before graph optimisation (the optimiser and
the quantisers keep graph outputs, and an ``Identity`` gives it a stable name).

The head's input is found from the graph itself rather than from node names, which
differ between exporters: ``logits`` is produced by ``Gemm(x, W, b)`` or by
``Add(MatMul(x, W), b)``, and ``x`` is the embedding.
"""

from __future__ import annotations

from pathlib import Path

from fairgate.guardrails.domain import EMBEDDING_OUTPUT
from fairgate.models.errors import EmbeddingOutputError

__all__ = ["add_embedding_output", "head_input"]


def head_input(graph: object, *, logits: str = "logits") -> str:
    """The name of the tensor the classification head reads (the pooled embedding)."""
    nodes = list(graph.node)  # type: ignore[attr-defined]
    initializers = {init.name for init in graph.initializer}  # type: ignore[attr-defined]
    producers = {out: node for node in nodes for out in node.output}
    node = producers.get(logits)
    if node is not None and node.op_type == "Gemm":
        return str(node.input[0])
    if node is not None and node.op_type == "Add":
        for name in node.input:
            matmul = producers.get(name)
            if matmul is not None and matmul.op_type == "MatMul":
                candidates = [i for i in matmul.input if i not in initializers and i not in _constants(nodes)]
                if len(candidates) == 1:
                    return str(candidates[0])
    found = "nothing" if node is None else f"a {node.op_type} node"
    raise EmbeddingOutputError(
        f"cannot find the classification head's input: {logits!r} is produced by {found}, not Gemm or "
        "Add(MatMul); the domain monitor needs a linear classification head (export with "
        "embedding_output=False to build without domain statistics)"
    )


def _constants(nodes: list) -> set[str]:
    return {out for node in nodes if node.op_type == "Constant" for out in node.output}


def add_embedding_output(path: Path, *, logits: str = "logits", name: str = EMBEDDING_OUTPUT) -> str:
    """Add output ``name`` (``float [batch, hidden]``) = the head's input to the graph at ``path``.

    Rewrites the file in place and returns the name of the tensor exposed.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    if any(output.name == name for output in graph.output):
        return name
    source = head_input(graph, logits=logits)
    graph.node.append(helper.make_node("Identity", [source], [name], name="fairgate_embedding"))
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch_size", None]))
    onnx.save(model, str(path))
    return source

"""TFLite's reference kernels (ai-edge-litert, BUILTIN_REF): the ground truth for bit-exactness."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import McunetError


def _interpreter(model: str | Path | bytes, preserve: bool = False):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise McunetError("ai-edge-litert is not installed; pip install ai-edge-litert") from exc
    kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF,
              "experimental_preserve_all_tensors": preserve}
    if isinstance(model, bytes):
        interp = Interpreter(model_content=model, **kwargs)
    else:
        interp = Interpreter(model_path=str(model), **kwargs)
    interp.allocate_tensors()
    return interp


def reference_outputs(model: str | Path | bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run each row of the batched inputs through TFLite's reference kernels."""
    interp = _interpreter(model)
    ins, outs = interp.get_input_details(), interp.get_output_details()
    rows = inputs[0].shape[0]
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for r in range(rows):
        for d, x in zip(ins, inputs):
            interp.set_tensor(d["index"], x[r:r + 1].reshape(d["shape"]))
        interp.invoke()
        for k, d in enumerate(outs):
            results[k].append(interp.get_tensor(d["index"]).reshape(d["shape"][1:]).copy())
    return [np.stack(r) for r in results]


def reference_tensors(model: str | Path | bytes, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Every tensor of the model after one invoke on the first row, by tensor index."""
    interp = _interpreter(model, preserve=True)
    for d, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(d["index"], x[0:1].reshape(d["shape"]))
    interp.invoke()
    tensors = {}
    for d in interp.get_tensor_details():
        try:
            tensors[d["index"]] = interp.get_tensor(d["index"]).copy()
        except ValueError:  # tensors without data (e.g. optional inputs)
            continue
    return tensors

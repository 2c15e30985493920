"""Graph rewrites done before lowering. Each takes and returns a Graph (changed in place).

- fold_constants: evaluate shape arithmetic (SHAPE, STRIDED_SLICE, PACK) and constant
  RESHAPEs at compile time; a RESHAPE keeps only its data input.
- fold_pad: an explicit PAD feeding a VALID conv becomes the conv's own padding.
- remove_dead: drop ops whose outputs nobody uses.
"""
from __future__ import annotations

import numpy as np

from .errors import McunetError
from .graph import NP_TYPES, Graph, Op
from .validate import FOLDABLE_OPS, check_op


def _strided_slice(op: Op, x: np.ndarray, begin, end, strides) -> np.ndarray:
    a = op.attrs
    if a.get("ellipsis_mask") or a.get("new_axis_mask"):
        raise McunetError(f"STRIDED_SLICE at index {op.index}: ellipsis/new-axis masks "
                          "cannot be folded")
    index = []
    for d in range(x.ndim):
        b, e, s = int(begin[d]), int(end[d]), int(strides[d])
        if a.get("offset"):
            e = b + e
        if a["shrink_axis_mask"] >> d & 1:
            if not -x.shape[d] <= b < x.shape[d]:
                raise McunetError(f"STRIDED_SLICE at index {op.index}: begin {b} of the shrunk "
                                  f"axis {d} is out of range for size {x.shape[d]}")
            index.append(b)
            continue
        index.append(slice(None if a["begin_mask"] >> d & 1 else b,
                           None if a["end_mask"] >> d & 1 else e, s))
    return np.asarray(x[tuple(index)])


def _evaluate(graph: Graph, op: Op) -> np.ndarray | None:
    """The constant value of an op's output, or None if it is not known at compile time."""
    ins = [graph.t(i) for i in op.inputs if i >= 0]
    if op.kind == "SHAPE":  # needs only the (static) shape of its input
        out = graph.t(op.outputs[0])
        return np.asarray(ins[0].shape, dtype=np.int64 if out.dtype == "int64" else np.int32)
    if not all(t.is_const for t in ins):
        return None
    if op.kind == "STRIDED_SLICE":
        return _strided_slice(op, *[t.data for t in ins])
    if op.kind == "PACK":
        return np.stack([t.data for t in ins], axis=op.attrs["axis"])
    if op.kind in ("RESHAPE", "SQUEEZE"):
        return ins[0].data.reshape(graph.t(op.outputs[0]).shape)
    return None


def fold_constants(graph: Graph) -> Graph:
    changed = True
    while changed:
        changed = False
        for op in list(graph.ops):
            value = _evaluate(graph, op)
            if value is None:
                continue
            out = graph.t(op.outputs[0])
            value = np.asarray(value)
            if tuple(value.shape) != tuple(out.shape):
                raise McunetError(f"{op.kind} at index {op.index} computes a value of shape "
                                  f"{tuple(value.shape)} but its output '{out.name}' has shape "
                                  f"{tuple(out.shape)}; the model is inconsistent")
            if op.outputs[0] in graph.outputs:
                raise McunetError(f"the model's output '{out.name}' is computed from constants "
                                  f"only ({op.kind} at index {op.index}); mcunet compiles "
                                  "outputs that depend on the model's inputs")
            out.data = value.astype(NP_TYPES[out.dtype])
            graph.ops.remove(op)
            changed = True
    for op in graph.ops:
        if op.kind == "RESHAPE":  # the output tensor's static shape is all we need
            check_op(graph, op)  # a shape computed by folded ops must match it
            op.inputs = op.inputs[:1]
    leftover = [op for op in graph.ops if op.kind in FOLDABLE_OPS]
    if leftover:
        op = leftover[0]
        raise McunetError(f"{op.kind} at index {op.index} depends on run-time values; mcunet "
                          "folds it only when it computes shapes from constants")
    return graph


def fold_pad(graph: Graph) -> Graph:
    """PAD(x) -> VALID CONV_2D/DEPTHWISE_CONV_2D becomes a conv on x with explicit padding.

    TFLite's int8 PAD fills with the zero point, which is exactly what the conv's own
    padding means (a padded pixel contributes nothing), so the rewrite is exact.
    """
    users = graph.consumers()
    for pad in [op for op in graph.ops if op.kind in ("PAD", "PADV2")]:
        out = pad.outputs[0]
        convs = users.get(out, [])
        if out in graph.outputs or not convs or any(
                c.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or c.inputs[0] != out
                or c.attrs["padding"] != "VALID" for c in convs):
            continue
        x, padded = graph.t(pad.inputs[0]), graph.t(out)
        if x.quant is None or padded.quant is None or x.quant.s != padded.quant.s \
                or x.quant.zp != padded.quant.zp:
            continue  # PAD copies raw values: folding is exact only when quantisation is kept
        pads = graph.t(pad.inputs[1]).data if graph.t(pad.inputs[1]).is_const else None
        if pads is None or len(x.shape) != 4 or pads.shape != (4, 2):
            continue
        if pads[0].any() or pads[3].any():
            continue  # only spatial padding folds
        if pad.kind == "PADV2" and len(pad.inputs) > 2 and pad.inputs[2] >= 0:
            value = graph.t(pad.inputs[2])
            if not value.is_const or int(value.data.reshape(-1)[0]) != x.quant.zp:
                continue
        for conv in convs:
            conv.inputs[0] = pad.inputs[0]
            conv.attrs["extra_pad_top"] = conv.attrs.get("extra_pad_top", 0) + int(pads[1][0])
            conv.attrs["extra_pad_left"] = conv.attrs.get("extra_pad_left", 0) + int(pads[2][0])
        graph.ops.remove(pad)
    return graph


def remove_dead(graph: Graph) -> Graph:
    while True:
        used = set(graph.outputs) | {i for op in graph.ops for i in op.inputs}
        dead = [op for op in graph.ops if not any(o in used for o in op.outputs)]
        if not dead:
            return graph
        for op in dead:
            graph.ops.remove(op)


def run_passes(graph: Graph) -> Graph:
    for fn in (fold_constants, fold_pad, remove_dead):
        graph = fn(graph)
    return graph

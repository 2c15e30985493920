"""CONCATENATION of int8 tensors along any axis: a copy (TFLite requires every input to share
the output's scale and zero point, so nothing is requantised)."""
from __future__ import annotations

import numpy as np

from mcunet.graph import Op
from mcunet.layers import Chunk, ConcatLayer
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported


@lowers("CONCATENATION")
def lower_concat(op: Op, ctx: LowerContext) -> Step:
    out = ctx.t(op.outputs[0])
    ins = [ctx.t(i) for i in op.inputs]
    rank = len(out.shape)
    if not ins:
        raise unsupported(op, "no inputs")
    if op.attrs.get("activation", "NONE") != "NONE":
        raise unsupported(op, f"fused activation {op.attrs['activation']} on an int8 "
                              "concatenation (TFLite allows none)")
    if out.dtype != "int8" or any(t.dtype != "int8" for t in ins):
        raise unsupported(op, "only int8 inputs and output are supported")
    for t in ins:
        if t.quant is None or out.quant is None or t.quant.per_axis or \
                t.quant.s != out.quant.s or t.quant.zp != out.quant.zp:
            raise unsupported(op, f"input '{t.name}' is quantised differently from the output "
                                  "(TFLite requires equal scale and zero point; insert a "
                                  "QUANTIZE to requantise)")
    axis = op.attrs.get("axis", 0)
    if not -rank <= axis < rank:
        raise unsupported(op, f"axis {axis} is out of range for rank {rank}")
    axis = axis + rank if axis < 0 else axis
    for t in ins:
        if len(t.shape) != rank or \
                any(t.shape[d] != out.shape[d] for d in range(rank) if d != axis):
            raise unsupported(op, f"input shape {t.shape} does not fit output {out.shape} "
                                  f"along axis {axis}")
    if sum(t.shape[axis] for t in ins) != out.shape[axis]:
        raise unsupported(op, f"inputs {[t.shape for t in ins]} do not add up to {out.shape} "
                              f"along axis {axis}")
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    inner = int(np.prod(out.shape[axis + 1:], dtype=np.int64))
    chunks, offset = [], 0
    for t in ins:
        chunk = t.shape[axis] * inner  # contiguous bytes of this input per outer index
        chunks.append(Chunk(bytes=chunk, offset=offset))
        offset += chunk
    args = []
    for k, (tid, t) in enumerate(zip(op.inputs, ins)):
        if t.is_const:  # a constant operand is copied from flash
            args.append(ctx.const("concat", t.data.astype(np.int8), f"input{k}"))
        else:
            args.append(TensorArg(tid, f"input{k}"))
    layer = ConcatLayer(out_shape=tuple(out.shape), axis=axis, outer=outer, out_chunk=offset,
                        chunks=tuple(chunks))
    return Step(op, kernels.portable(kernels.CONCAT), layer,
                (*args, TensorArg(op.outputs[0], "output", output=True)))

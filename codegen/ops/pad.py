"""PAD and PADV2 of an int8 tensor (rank <= 4) that was not folded into a convolution.

TFLite copies the input values raw (no requantisation, even if the quantisation differs)
and fills with the output zero point (PAD) or the raw int8 constant (PADV2)."""
from __future__ import annotations

import numpy as np

from mcunet.graph import Op
from mcunet.layers import PadDim, PadLayer
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported

MAX_RANK = 4


def _paddings(op: Op, ctx: LowerContext, rank: int) -> list[tuple[int, int]]:
    if len(op.inputs) < 2 or op.inputs[1] < 0:
        raise unsupported(op, "the paddings input is missing")
    p = ctx.t(op.inputs[1])
    if not p.is_const:
        raise unsupported(op, "the paddings must be a constant tensor")
    if p.dtype not in ("int32", "int64"):
        raise unsupported(op, f"paddings of type {p.dtype}; expected int32 or int64")
    if tuple(p.data.shape) != (rank, 2):
        raise unsupported(op, f"paddings of shape {tuple(p.data.shape)}; expected ({rank}, 2)")
    pads = [(int(b), int(a)) for b, a in p.data.tolist()]
    if any(b < 0 or a < 0 for b, a in pads):
        raise unsupported(op, f"negative paddings {pads}")
    return pads


def _pad_value(op: Op, ctx: LowerContext) -> int:
    out = ctx.t(op.outputs[0])
    if op.kind == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        v = ctx.t(op.inputs[2])
        if not v.is_const or v.dtype != "int8" or v.size != 1:
            raise unsupported(op, "the constant value must be a constant int8 scalar")
        if v.quant is None or v.quant.s != out.quant.s or v.quant.zp != out.quant.zp:
            raise unsupported(op, "the constant value must be quantised like the output "
                                  "(TFLite rejects it otherwise)")
        return int(v.data.reshape(-1)[0])
    return out.quant.zp  # PAD (and PADV2 without a value) fill with the output zero point


def _input_arg(op: Op, ctx: LowerContext):
    """The data input: a pointer into the arena, or into flash for a constant."""
    x = ctx.t(op.inputs[0])
    if x.is_const:
        return ctx.const("pad_input", x.data.astype(np.int8), "input")
    return TensorArg(op.inputs[0], "input")


@lowers("PAD", "PADV2")
def lower_pad(op: Op, ctx: LowerContext) -> Step:
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    rank = len(x.shape)
    if x.dtype != "int8" or out.dtype != "int8":
        raise unsupported(op, f"{op.kind} {x.dtype} -> {out.dtype}; only int8 is supported")
    if out.quant is None:
        raise unsupported(op, f"output '{out.name}' has no quantisation parameters")
    if rank > MAX_RANK:
        raise unsupported(op, f"rank {rank} > {MAX_RANK}")
    pads = _paddings(op, ctx, rank)
    expected = tuple(d + b + a for d, (b, a) in zip(x.shape, pads))
    if expected != tuple(out.shape):
        raise unsupported(op, f"padding {x.shape} by {pads} gives {expected}, not {out.shape}")
    value = _pad_value(op, ctx)
    if not -128 <= value <= 127:
        raise unsupported(op, f"pad value {value} is outside the int8 range")
    # Right-align to 4-D, then merge unpadded trailing dims into the one before, so the
    # innermost loop copies the longest contiguous rows.
    dims = [[d, b, a] for d, (b, a) in zip(x.shape, pads)]
    while len(dims) > 1 and dims[-1][1] == dims[-1][2] == 0:
        size = dims.pop()[0]
        dims[-1] = [dims[-1][0] * size, dims[-1][1] * size, dims[-1][2] * size]
    dims = [[1, 0, 0]] * (MAX_RANK - len(dims)) + dims
    layer = PadLayer(in_shape=tuple(x.shape), out_shape=tuple(out.shape), pads=tuple(pads),
                     value=value, copy_only=all(b == a == 0 for _, b, a in dims), size=x.size,
                     dims=tuple(PadDim(d, b, a, d + b + a) for d, b, a in dims))
    return Step(op, kernels.portable(kernels.PAD), layer,
                (_input_arg(op, ctx), TensorArg(op.outputs[0], "output", output=True)))

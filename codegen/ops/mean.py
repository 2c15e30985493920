"""MEAN of an int8 tensor over any constant set of axes (keep_dims or not).

TFLite's reference kernel (QuantizedMeanOrSum) sums the raw int8 values in int32, subtracts
input_zp * n, and requantises with the multiplier of in_scale / out_scale into which 1/n is
folded: ``(q << s) / n`` with the shift lowered by ``s``."""
from __future__ import annotations

import numpy as np

from mcunet.graph import Op
from mcunet.layers import Loop, MeanLayer
from mcunet.quant import quantize_multiplier
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported

MAX_REDUCED = 1 << 23  # keeps the int32 sum and input_zp * n far from overflow


def mean_multiplier(input_scale: float, output_scale: float, n: int) -> tuple[int, int]:
    """(multiplier, shift) of the mean over n values, as TFLite's QuantizedMeanOrSum."""
    multiplier, shift = quantize_multiplier(float(input_scale) / float(output_scale))
    s = min(n.bit_length() - 1, 32, 31 + shift)  # floor(log2 n), bounded
    return (multiplier << s) // n, shift - s


def resolve_axes(op: Op, ctx: LowerContext, rank: int) -> list[int]:
    if len(op.inputs) < 2 or op.inputs[1] < 0:
        raise unsupported(op, "the axes input is missing")
    axes_t = ctx.t(op.inputs[1])
    if not axes_t.is_const:
        raise unsupported(op, "the axes must be a constant tensor")
    if axes_t.dtype != "int32":  # TFLite's MEAN rejects other types in Prepare
        raise unsupported(op, f"axes of type {axes_t.dtype}; TFLite's MEAN needs int32")
    axes = []
    for a in axes_t.data.reshape(-1).tolist():
        if not -rank <= a < rank:
            raise unsupported(op, f"axis {a} is out of range for a rank-{rank} input")
        a = a + rank if a < 0 else a
        if a not in axes:
            axes.append(a)
    return sorted(axes)


def collapse(shape: tuple[int, ...], reduced: list[int]) -> tuple[tuple[Loop, ...], tuple[Loop, ...]]:
    """Kept and reduced loops (size, input stride), outermost first: size-1 dims dropped and
    neighbouring dims of the same kind merged."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    strides.reverse()
    dims: list[list] = []  # [size, stride, is_reduced]
    for i, d in enumerate(shape):
        if d == 1:
            continue
        red = i in reduced
        if dims and dims[-1][2] == red and dims[-1][1] == d * strides[i]:
            dims[-1][0] *= d
            dims[-1][1] = strides[i]
        else:
            dims.append([d, strides[i], red])
    kept = tuple(Loop(s, st) for s, st, r in dims if not r)
    red = tuple(Loop(s, st) for s, st, r in dims if r)
    return kept, red


def _input_arg(op: Op, ctx: LowerContext):
    """The data input: a pointer into the arena, or into flash for a constant."""
    x = ctx.t(op.inputs[0])
    if x.is_const:
        return ctx.const("mean_input", x.data.astype(np.int8), "input")
    return TensorArg(op.inputs[0], "input")


@lowers("MEAN")
def lower_mean(op: Op, ctx: LowerContext) -> Step:
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if x.dtype != "int8" or out.dtype != "int8":
        raise unsupported(op, f"MEAN {x.dtype} -> {out.dtype}; only int8 -> int8 is supported")
    for t in (x, out):
        if t.quant is None or t.quant.per_axis:
            raise unsupported(op, f"tensor '{t.name}' needs per-tensor quantisation")
    axes = resolve_axes(op, ctx, len(x.shape))
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    kept_size = x.size // n
    if out.size != kept_size:
        raise unsupported(op, f"output shape {out.shape} does not match a mean of {x.shape} "
                              f"over axes {axes}")
    if n > MAX_REDUCED:
        raise unsupported(op, f"a mean over {n} values would overflow TFLite's int32 sum")
    multiplier, shift = mean_multiplier(x.quant.s, out.quant.s, n)
    kept, red = collapse(x.shape, axes)
    layer = MeanLayer(in_shape=tuple(x.shape), axes=tuple(axes), n=n, kept=kept, red=red,
                      sum_offset=-x.quant.zp * n, output_offset=out.quant.zp,
                      multiplier=multiplier, shift=shift)
    return Step(op, kernels.portable(kernels.MEAN), layer,
                (_input_arg(op, ctx), TensorArg(op.outputs[0], "output", output=True)))

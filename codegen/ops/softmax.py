"""SOFTMAX int8 -> int8 over the last axis (output scale 1/256, zero point -128)."""
from __future__ import annotations

import math

import numpy as np

from mcunet.graph import Op
from mcunet.layers import SoftmaxLayer
from mcunet.quant import quantize_multiplier
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported

INPUT_INTEGER_BITS = 5  # the differences to the row maximum are Q5.26


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(multiplier, left shift, diff_min) as TFLite's PreprocessSoftmaxScaling and
    CalculateInputRadius compute them, in double."""
    real = min(float(np.float32(beta)) * float(input_scale) * float(1 << (31 - INPUT_INTEGER_BITS)),
               float((1 << 31) - 1))
    multiplier, shift = quantize_multiplier(real)
    radius = ((1 << INPUT_INTEGER_BITS) - 1) * float(1 << (31 - INPUT_INTEGER_BITS)) / float(1 << shift)
    return multiplier, shift, -int(math.floor(radius))


@lowers("SOFTMAX")
def lower_softmax(op: Op, ctx: LowerContext) -> Step:
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if x.dtype != "int8" or out.dtype != "int8":
        raise unsupported(op, f"SOFTMAX {x.dtype} -> {out.dtype}; only int8 -> int8 is supported")
    if out.quant.s != 1.0 / 256 or out.quant.zp != -128:
        raise unsupported(op, "the int8 output must have scale 1/256 and zero point -128")
    multiplier, shift, diff_min = softmax_params(op.attrs["beta"], x.quant.s)
    if shift < 0:
        raise unsupported(op, f"beta * input scale = {op.attrs['beta'] * x.quant.s:g} is too small")
    depth = x.shape[-1]
    layer = SoftmaxLayer(rows=x.size // depth, depth=depth, multiplier=multiplier,
                         left_shift=shift, diff_min=diff_min)
    return Step(op, kernels.portable(kernels.SOFTMAX), layer,
                (TensorArg(op.inputs[0], "input"), TensorArg(op.outputs[0], "output", output=True)))

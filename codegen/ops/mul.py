"""MUL of two int8 tensors (one may be a constant), optional broadcast and fused activation."""
from __future__ import annotations

import numpy as np

from mcunet.graph import Op
from mcunet.layers import MulLayer
from mcunet.quant import activation_range, quantize_multiplier
from mcunet.step import Step

from .. import kernels
from ..lower import LowerContext, lowers, unsupported
from .add import binary_args, broadcast_shape
from .scalar import mul_table, scalar_lut_step, scalar_operand


def mul_multiplier(scale1: float, scale2: float, out_scale: float) -> tuple[int, int]:
    """(multiplier, shift) of scale1 * scale2 / out_scale. TFLite's MUL Prepare computes the
    product and the quotient in float32 and only widens the result to double."""
    real = np.float32(np.float32(scale1) * np.float32(scale2)) / np.float32(out_scale)
    return quantize_multiplier(float(np.float32(real)))


@lowers("MUL")
def lower_mul(op: Op, ctx: LowerContext) -> Step:
    a, b, out = ctx.t(op.inputs[0]), ctx.t(op.inputs[1]), ctx.t(op.outputs[0])
    if not (a.dtype == b.dtype == out.dtype == "int8"):
        raise unsupported(op, f"MUL {a.dtype} x {b.dtype} -> {out.dtype}; only int8 is supported")
    for t in (a, b, out):
        if t.quant is None:
            raise unsupported(op, f"tensor '{t.name}' has no quantisation parameters")
        if t.quant.per_axis:
            raise unsupported(op, f"tensor '{t.name}' is quantised per axis; MUL needs per-tensor")
    if a.is_const and b.is_const:
        raise unsupported(op, "both operands are constant (the product should have been folded)")
    if ctx.arithmetic == "tflm":  # TF Lite Micro's MUL Prepare: product and quotient in double
        multiplier, shift = quantize_multiplier(float(a.quant.s) * float(b.quant.s)
                                                / float(out.quant.s))
    else:
        multiplier, shift = mul_multiplier(a.quant.s, b.quant.s, out.quant.s)
    try:
        act_min, act_max = activation_range(op.attrs["activation"], out.quant.s, out.quant.zp)
    except ValueError as exc:
        raise unsupported(op, str(exc)) from None
    scalar = scalar_operand(op, ctx)
    if scalar is not None:  # a tensor times a one-value constant: a table (codegen/ops/scalar.py)
        table = mul_table(-a.quant.zp, -b.quant.zp, multiplier, shift, out.quant.zp, act_min,
                          act_max, *scalar)
        if table is not None:
            return scalar_lut_step(op, ctx, scalar[0], table)
    layer = MulLayer(broadcast_shape(op, ctx), input1_offset=-a.quant.zp,
                     input2_offset=-b.quant.zp, output_offset=out.quant.zp,
                     output_multiplier=multiplier, output_shift=shift, act_min=act_min,
                     act_max=act_max)
    return Step(op, kernels.portable(kernels.MUL), layer, binary_args(op, ctx))

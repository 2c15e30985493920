"""QUANTIZE (float32 -> int8 at a model's input, int8 -> int8 requantisation) and
DEQUANTIZE (int8 -> float32 at a model's output)."""
from __future__ import annotations

import numpy as np

from mcunet.graph import Op, Tensor
from mcunet.layers import FloatConversionLayer, RequantizeLayer
from mcunet.quant import quantize_multiplier
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported


def _per_tensor(op: Op, t: Tensor) -> None:
    if t.quant is None:
        raise unsupported(op, f"{t.dtype} tensor '{t.name}' has no quantisation parameters")
    if t.quant.per_axis:
        raise unsupported(op, f"tensor '{t.name}' is quantised per axis; only per-tensor "
                              "quantisation is supported here")


def _float_literal(value: float) -> str:
    """An exact C float literal (hexadecimal) for a float32 value."""
    return float(np.float32(value)).hex() + "f"


def _io(op: Op, ctx: LowerContext) -> tuple[Tensor, Tensor]:
    if len(op.inputs) < 1 or len(op.outputs) != 1:
        raise unsupported(op, "expected one input and one output")
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if x.is_const:
        raise unsupported(op, f"constant input '{x.name}' (a {op.kind} of weights) is not "
                              "supported; quantise the weights when converting the model")
    if x.size != out.size:
        raise unsupported(op, f"input {x.shape} and output {out.shape} differ in size")
    return x, out


@lowers("QUANTIZE")
def lower_quantize(op: Op, ctx: LowerContext) -> Step:
    x, out = _io(op, ctx)
    args = (TensorArg(op.inputs[0], "input"), TensorArg(op.outputs[0], "output", output=True))
    if out.dtype != "int8" or x.dtype not in ("float32", "int8"):
        raise unsupported(op, f"QUANTIZE {x.dtype} -> {out.dtype}; mcunet supports "
                              "float32 -> int8 and int8 -> int8")
    _per_tensor(op, out)
    if x.dtype == "float32":
        # TFLite's AffineQuantize: roundf(x / scale) with a float division, then + zero point.
        layer = FloatConversionLayer(size=out.size, scale=_float_literal(out.quant.s),
                                     scale_text=repr(out.quant.s), zero_point=out.quant.zp)
        return Step(op, kernels.portable(kernels.QUANTIZE_FLOAT), layer, args)
    _per_tensor(op, x)
    # TFLite's Requantize: multiplier of in_scale / out_scale (double division).
    multiplier, shift = quantize_multiplier(float(x.quant.s) / float(out.quant.s))
    layer = RequantizeLayer(size=out.size, input_offset=-x.quant.zp,
                            output_offset=out.quant.zp, multiplier=multiplier, shift=shift,
                            # m = 2^30, shift 1 multiplies by exactly 1: no rounding happens.
                            identity=multiplier == 1 << 30 and shift == 1)
    return Step(op, kernels.portable(kernels.REQUANTIZE), layer, args)


@lowers("DEQUANTIZE")
def lower_dequantize(op: Op, ctx: LowerContext) -> Step:
    x, out = _io(op, ctx)
    if x.dtype != "int8" or out.dtype != "float32":
        raise unsupported(op, f"DEQUANTIZE {x.dtype} -> {out.dtype}; mcunet supports "
                              "int8 -> float32 only")
    _per_tensor(op, x)
    layer = FloatConversionLayer(size=x.size, scale=_float_literal(x.quant.s),
                                 scale_text=repr(x.quant.s), zero_point=x.quant.zp)
    return Step(op, kernels.portable(kernels.DEQUANTIZE), layer,
                (TensorArg(op.inputs[0], "input"), TensorArg(op.outputs[0], "output", output=True)))

"""Elementwise int8 activations: LOGISTIC, TANH and HARD_SWISH (256-entry tables built at
compile time: TFLite's float32 LUTPopulate, and its 16-bit fixed point evaluated per input
value) and the standalone RELU family (requantise, then clamp)."""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable

import numpy as np

from mcunet.graph import Op, Tensor
from mcunet.layers import LutLayer, ReluLayer
from mcunet.quant import (INT8_MAX, INT8_MIN, activation_range, quantize_multiplier,
                          quantize_value, round_half_away)
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported

INT16_MAX = (1 << 15) - 1


def _int8_io(op: Op, ctx: LowerContext) -> tuple[Tensor, Tensor]:
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if x.dtype != "int8" or out.dtype != "int8":
        raise unsupported(op, f"{op.kind} {x.dtype} -> {out.dtype}; only int8 -> int8 is supported")
    for t in (x, out):
        if t.quant is None:
            raise unsupported(op, f"tensor '{t.name}' has no quantisation parameters")
        if t.quant.per_axis:
            raise unsupported(op, f"tensor '{t.name}' is quantised per axis; {op.kind} needs per-tensor")
    if x.size != out.size:
        raise unsupported(op, f"input {x.shape} and output {out.shape} differ in size")
    return x, out


def _io_args(op: Op) -> tuple[TensorArg, TensorArg]:
    return TensorArg(op.inputs[0], "input"), TensorArg(op.outputs[0], "output", output=True)


# --- lookup tables ---------------------------------------------------------------------------

def _c_float_function(name: str, fallback: Callable) -> Callable[[np.float32], np.float32]:
    """The C library's float function `name` (what TFLite's std::exp(float), std::tanh(float)
    call); numpy's float32 version when the C library cannot be loaded. They agree except,
    rarely, in the last bit."""
    try:
        lib = ctypes.util.find_library("m")
        if lib is None:
            raise OSError("no libm")
        fn = getattr(ctypes.CDLL(lib), name)
        fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
        return lambda v: np.float32(fn(float(v)))
    except (OSError, AttributeError):  # pragma: no cover - every supported host has libm
        def np_fn(v: np.float32) -> np.float32:
            with np.errstate(over="ignore", under="ignore"):
                return fallback(np.float32(v))
        return np_fn


_expf = _c_float_function("expf", np.exp)
_tanhf = _c_float_function("tanhf", np.tanh)


def sigmoid_f32(v: np.float32) -> np.float32:
    """1.0f / (1.0f + expf(-v)), every step in float32 as in TFLite's SigmoidPrepare."""
    one = np.float32(1.0)
    with np.errstate(over="ignore"):
        return np.float32(one / np.float32(one + _expf(np.float32(-v))))


def lut_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int,
              transform: Callable[[np.float32], np.float32]) -> np.ndarray:
    """The int8 table of TFLite's LUTPopulate, in float32: entry v + 128 is the output for the
    input value v (-128..127)."""
    in_scale_f = np.float32(in_scale)
    inverse_scale = np.float32(np.float32(1.0) / np.float32(out_scale))
    table = np.empty(256, dtype=np.int8)
    for v in range(-128, 128):
        dequantized = np.float32(in_scale_f * np.float32(v - in_zp))
        transformed = np.float32(transform(dequantized))
        rescaled = np.float32(round_half_away(float(np.float32(transformed * inverse_scale))))
        quantized = int(np.float32(rescaled + np.float32(out_zp)))  # a C cast truncates
        table[v + 128] = min(127, max(-128, quantized))
    return table


def lut_step(op: Op, ctx: LowerContext, table: np.ndarray) -> Step:
    """A table-lookup step (any int8 -> int8 function of one value, e.g. LOGISTIC, TANH)."""
    out = ctx.t(op.outputs[0])
    x_arg, out_arg = _io_args(op)
    return Step(op, kernels.portable(kernels.LUT), LutLayer(out.size),
                (x_arg, ctx.const("lut", table.astype(np.int8), "table"), out_arg))


@lowers("LOGISTIC")
def lower_logistic(op: Op, ctx: LowerContext) -> Step:
    x, out = _int8_io(op, ctx)
    # TFLite's Prepare demands exactly this scale (a float compare); the zero point is free.
    if np.float32(out.quant.s) != np.float32(1.0 / 256):
        raise unsupported(op, f"the int8 output scale is {out.quant.s!r}; TFLite requires 1/256")
    table = lut_table(x.quant.s, x.quant.zp, out.quant.s, out.quant.zp, sigmoid_f32)
    return lut_step(op, ctx, table)


@lowers("TANH")
def lower_tanh(op: Op, ctx: LowerContext) -> Step:
    x, out = _int8_io(op, ctx)
    # TFLite's Prepare demands exactly this scale and zero point for int8 (a float compare).
    if np.float32(out.quant.s) != np.float32(1.0 / 128) or out.quant.zp != 0:
        raise unsupported(op, f"the int8 output has scale {out.quant.s!r} and zero point "
                              f"{out.quant.zp}; TFLite requires 1/128 and 0")
    table = lut_table(x.quant.s, x.quant.zp, out.quant.s, out.quant.zp, _tanhf)
    return lut_step(op, ctx, table)


# --- HARD_SWISH ------------------------------------------------------------------------------

def downscale_multiplier(m32: int) -> int:
    """TFLite's DownScaleInt32ToInt16Multiplier: a Q31 multiplier rounded to Q15."""
    if m32 >= (1 << 31) - 1 - (1 << 15):
        return INT16_MAX
    return (m32 + (1 << 15)) >> 16


def hard_swish_params(in_scale: float, out_scale: float) -> dict:
    """The multipliers of TFLite's HardSwishPrepare, computed in float32 as it does."""
    hires_input_scale = np.float32(np.float32(1.0 / 128.0) * np.float32(in_scale))
    reluish_scale = np.float32(np.float32(3.0) / np.float32(32768.0))
    output_multiplier = np.float32(hires_input_scale / np.float32(out_scale))
    reluish_multiplier = np.float32(hires_input_scale / reluish_scale)
    out_q, out_exp = quantize_multiplier(float(output_multiplier))
    relu_q, relu_exp = quantize_multiplier(float(reluish_multiplier))
    return {"output_multiplier": downscale_multiplier(out_q), "output_exponent": out_exp,
            "reluish_multiplier": downscale_multiplier(relu_q), "reluish_exponent": relu_exp}


def _wrap16(v: int) -> int:
    """A C cast to int16_t (two's complement)."""
    return ((v + 32768) & 0xFFFF) - 32768


def _div_pow2_toward_zero(v: int, exponent: int) -> int:
    """C's v / (1 << exponent): the quotient truncated toward zero."""
    q = abs(v) >> exponent
    return q if v >= 0 else -q


def _rounding_high_mul16(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16."""
    if a == b == -32768:
        return 32767
    ab = a * b
    return _wrap16(_div_pow2_toward_zero(ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14)), 15))


def _high_mul16(a: int, b: int) -> int:
    """TFLite's SaturatingDoublingHighMul on int16 (no rounding nudge)."""
    if a == b == -32768:
        return 32767
    return _wrap16(_div_pow2_toward_zero(a * b, 15))


def _rounding_divide_by_pot16(x: int, exponent: int) -> int:
    """gemmlowp's RoundingDivideByPOT as TFLite instantiates it on int16: for exponents of 16
    and more the mask (1 << e) - 1 truncated to int16 is -1, so nonnegative x give 1 and
    negative x give -1 (TFLite does exactly this)."""
    mask = -1 if exponent >= 16 else (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def hard_swish_table(params: dict, in_zp: int, out_zp: int) -> np.ndarray:
    """The int8 output of TFLite's reference HARD_SWISH (reference_ops::HardSwish, 16-bit
    fixed point) for each input value v, at v + 128: the kernel is a function of one byte, so
    the compile evaluates its integer steps once per value and the C looks them up."""
    out_m, out_e = params["output_multiplier"], params["output_exponent"]
    relu_m, relu_e = params["reluish_multiplier"], params["reluish_exponent"]
    table = np.empty(256, dtype=np.int8)
    for v in range(-128, 128):
        hires = _wrap16((v - in_zp) * 128)
        preshift = _rounding_high_mul16(hires, out_m)
        reluish = hires
        if relu_e > 0:  # a saturating shift left by relu_e - 1, the multiply, then by 1
            reluish = max(-32768, min(32767, reluish << (relu_e - 1)))
        reluish = _rounding_high_mul16(reluish, relu_m)
        if relu_e > 0:
            reluish = max(-32768, min(32767, reluish << 1))
        elif relu_e < 0:
            reluish = _wrap16(_rounding_divide_by_pot16(reluish, -relu_e))
        reluish = (reluish + 32768) >> 1  # [-1, 1] -> [0, 1]
        scaled = _high_mul16(reluish, preshift)
        out = _wrap16(_rounding_divide_by_pot16(scaled, -out_e) + out_zp)  # zero point in int16
        table[v + 128] = min(127, max(-128, out))
    return table


@lowers("HARD_SWISH")
def lower_hard_swish(op: Op, ctx: LowerContext) -> Step:
    x, out = _int8_io(op, ctx)
    params = hard_swish_params(x.quant.s, out.quant.s)
    if params["output_exponent"] > 0:  # TFLite's Prepare fails on this too
        raise unsupported(op, f"input scale / output scale = {x.quant.s / out.quant.s:g} is too "
                              "large (TFLite requires input scale / (128 * output scale) < 1)")
    return lut_step(op, ctx, hard_swish_table(params, x.quant.zp, out.quant.zp))


# --- RELU, RELU6, RELU_N1_TO_1 ---------------------------------------------------------------

RELU_KINDS = ("RELU", "RELU6", "RELU_N1_TO_1")


def relu_multiplier(in_scale: float, out_scale: float) -> tuple[int, int]:
    """TFLite's ReluPrepare divides the two float scales in float32, then widens to double."""
    return quantize_multiplier(float(np.float32(np.float32(in_scale) / np.float32(out_scale))))


def tflm_relu6_layer(x: Tensor, out: Tensor) -> ReluLayer:
    """TF Lite Micro's RELU6: the raw input clamped to [input zero point, the input's
    quantised 6.0] (roundf(6.0f / scale) in float32), whatever the output's quantisation."""
    six = max(INT8_MIN, min(INT8_MAX, quantize_value(6.0, x.quant.s, x.quant.zp)))
    return ReluLayer(kind="RELU6", size=out.size, input_offset=0, output_offset=0,
                     multiplier=1 << 30, shift=1, identity=True, act_min=x.quant.zp,
                     act_max=six)


@lowers(*RELU_KINDS)
def lower_relu(op: Op, ctx: LowerContext) -> Step:
    x, out = _int8_io(op, ctx)
    if ctx.arithmetic == "tflm" and op.kind == "RELU6":
        return Step(op, kernels.portable(kernels.RELU), tflm_relu6_layer(x, out), _io_args(op))
    if ctx.arithmetic == "tflm":  # TF Lite Micro's ReluPrepare divides the scales in double
        multiplier, shift = quantize_multiplier(float(x.quant.s) / float(out.quant.s))
    else:
        multiplier, shift = relu_multiplier(x.quant.s, out.quant.s)
    act_min, act_max = activation_range(op.kind, out.quant.s, out.quant.zp)
    layer = ReluLayer(kind=op.kind, size=out.size, input_offset=-x.quant.zp,
                      output_offset=out.quant.zp, multiplier=multiplier, shift=shift,
                      # Equal scales give multiplier 2^30, shift 1: requantising is then the
                      # identity.
                      identity=(multiplier, shift) == (1 << 30, 1),
                      act_min=act_min, act_max=act_max)
    return Step(op, kernels.portable(kernels.RELU), layer, _io_args(op))

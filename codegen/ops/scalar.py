"""ADD and MUL of a tensor and a one-value constant (a model's input rescaling, say
Keras' Rescaling layer as MUL then ADD): an int8 -> int8 function of one value, so a
256-entry table evaluated at compile time with TFLite's integer arithmetic for the op
(mcunet.quant.requantize is its MultiplyByQuantizedMultiplier), run by the table kernel
lut_s8: a load and a store a value instead of the two offsets, the multiplies and the
roundings."""
from __future__ import annotations

import numpy as np

from mcunet.graph import Op
from mcunet.layers import AddArith, LutLayer
from mcunet.quant import requantize
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def scalar_operand(op: Op, ctx: LowerContext) -> tuple[int, int] | None:
    """(index of the tensor operand, the constant's int8 value) where one operand is a
    constant of one value and the output has the tensor's shape; else None. Only for
    TFLite's reference arithmetic (--arithmetic tflm keeps its kernels)."""
    if ctx.arithmetic != "reference":
        return None
    a, b, out = (ctx.t(t) for t in (*op.inputs[:2], op.outputs[0]))
    for k, (x, c) in enumerate(((a, b), (b, a))):
        if c.is_const and not x.is_const and c.data.size == 1 and x.size == out.size:
            return k, int(np.asarray(c.data).reshape(-1)[0])
    return None


def _fits(v: int) -> bool:
    return INT32_MIN <= v <= INT32_MAX


def add_table(add: AddArith, k: int, c: int) -> np.ndarray | None:
    """ADD(x, c) (k = 0) or ADD(c, x) (k = 1) for every int8 x, as TFLite's reference: each
    input plus its offset shifted left, requantised, summed, requantised, plus the output
    offset, clamped. None where an intermediate leaves int32 (TFLite's int32 arithmetic
    would differ from Python's)."""
    table = np.zeros(256, dtype=np.int8)
    for x in range(-128, 128):
        v1, v2 = (x, c) if k == 0 else (c, x)
        s1 = (v1 + add.input1_offset) << add.left_shift
        s2 = (v2 + add.input2_offset) << add.left_shift
        if not (_fits(s1) and _fits(s2)) or add.input1_shift > 0 or add.input2_shift > 0:
            return None
        total = requantize(s1, add.input1_multiplier, add.input1_shift) \
            + requantize(s2, add.input2_multiplier, add.input2_shift)
        if not _fits(total) or not _fits(total << max(add.output_shift, 0)):
            return None
        out = requantize(total, add.output_multiplier, add.output_shift) + add.output_offset
        table[x + 128] = min(add.act_max, max(add.act_min, out))
    return table


def mul_table(off1: int, off2: int, multiplier: int, shift: int, out_offset: int,
              act_min: int, act_max: int, k: int, c: int) -> np.ndarray | None:
    """MUL(x, c) (k = 0) or MUL(c, x) (k = 1) for every int8 x, as TFLite's reference: the
    product of the offset inputs requantised, plus the output offset, clamped. None where
    the product shifted left leaves int32."""
    table = np.zeros(256, dtype=np.int8)
    for x in range(-128, 128):
        v1, v2 = (x, c) if k == 0 else (c, x)
        product = (v1 + off1) * (v2 + off2)
        if not _fits(product << max(shift, 0)):
            return None
        out = requantize(product, multiplier, shift) + out_offset
        table[x + 128] = min(act_max, max(act_min, out))
    return table


def scalar_lut_step(op: Op, ctx: LowerContext, k: int, table: np.ndarray) -> Step:
    """The table-lookup step of the op on its tensor operand (input k)."""
    out = ctx.t(op.outputs[0])
    return Step(op, kernels.portable(kernels.LUT), LutLayer(out.size),
                (TensorArg(op.inputs[k], "input"), ctx.const("lut", table, "table"),
                 TensorArg(op.outputs[0], "output", output=True)))

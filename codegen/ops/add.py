"""ADD of two int8 tensors with different scales, optional broadcast and fused activation."""
from __future__ import annotations

import numpy as np

from mcunet.graph import Op
from mcunet.layers import AddArith, AddLayer, Broadcast
from mcunet.quant import activation_range, quantize_multiplier
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported
from .scalar import add_table, scalar_lut_step, scalar_operand

LEFT_SHIFT = 20  # TFLite's headroom for int8 ADD


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of `shape` read as `out_shape` (4-D), 0 along broadcast axes."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step if dim > 1 else 0)
        step *= dim
    return tuple(reversed(strides))


def pad4(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (4 - len(shape)) + tuple(shape)


def broadcast_shape(op: Op, ctx: LowerContext) -> Broadcast:
    """Shape parameters for a binary elementwise kernel, shared by ADD and MUL."""
    a, b, out = ctx.t(op.inputs[0]), ctx.t(op.inputs[1]), ctx.t(op.outputs[0])
    if len(out.shape) > 4:
        raise unsupported(op, f"output rank {len(out.shape)} > 4")
    out4 = pad4(out.shape)
    broadcast = a.shape != b.shape
    if broadcast and tuple(np.broadcast_shapes(a.shape, b.shape)) != tuple(out.shape):
        raise unsupported(op, f"cannot broadcast {a.shape} and {b.shape} to {out.shape}")
    return Broadcast(size=out.size, broadcast=broadcast, out_shape=tuple(out4),
                     strides1=broadcast_strides(a.shape, out4),
                     strides2=broadcast_strides(b.shape, out4))


def binary_args(op: Op, ctx: LowerContext) -> tuple:
    args = []
    for k, tid in enumerate(op.inputs[:2]):
        name = f"input{k + 1}"
        if ctx.t(tid).is_const:  # a constant operand (a bias-like add) lives in flash
            args.append(ctx.const("operand", ctx.t(tid).data.astype(np.int8), name))
        else:
            args.append(TensorArg(tid, name))
    return (*args, TensorArg(op.outputs[0], "output", output=True))


def add_arith(a, b, out, activation: str) -> AddArith:
    """TFLite's int8 ADD constants for inputs a, b and output out (Tensors with quant)."""
    # Prepare-time arithmetic as in TFLite: float max, double ratios, float (1 << 20) * scale.
    twice_max = 2.0 * float(max(np.float32(a.quant.s), np.float32(b.quant.s)))
    m1, s1 = quantize_multiplier(a.quant.s / twice_max)
    m2, s2 = quantize_multiplier(b.quant.s / twice_max)
    out_scale = float(np.float32(1 << LEFT_SHIFT) * np.float32(out.quant.s))
    mo, so = quantize_multiplier(twice_max / out_scale)
    act_min, act_max = activation_range(activation, out.quant.s, out.quant.zp)
    return AddArith(input1_offset=-a.quant.zp, input2_offset=-b.quant.zp,
                    output_offset=out.quant.zp, left_shift=LEFT_SHIFT,
                    input1_multiplier=m1, input1_shift=s1, input2_multiplier=m2,
                    input2_shift=s2, output_multiplier=mo, output_shift=so, act_min=act_min,
                    act_max=act_max)


@lowers("ADD")
def lower_add(op: Op, ctx: LowerContext) -> Step:
    a, b, out = ctx.t(op.inputs[0]), ctx.t(op.inputs[1]), ctx.t(op.outputs[0])
    if not (a.dtype == b.dtype == out.dtype == "int8"):
        raise unsupported(op, "ADD needs int8 inputs and output")
    add = add_arith(a, b, out, op.attrs["activation"])
    scalar = scalar_operand(op, ctx)
    if scalar is not None:  # a tensor plus a one-value constant: a table (codegen/ops/scalar.py)
        table = add_table(add, *scalar)
        if table is not None:
            return scalar_lut_step(op, ctx, scalar[0], table)
    return Step(op, kernels.portable(kernels.ADD), AddLayer(broadcast_shape(op, ctx), add),
                binary_args(op, ctx))

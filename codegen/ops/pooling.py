"""AVERAGE_POOL_2D and MAX_POOL_2D (input and output share scale and zero point)."""
from __future__ import annotations

from mcunet.graph import Op
from mcunet.layers import PoolLayer
from mcunet.quant import activation_range
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported
from .conv import window_of


@lowers("AVERAGE_POOL_2D", "MAX_POOL_2D")
def lower_pool(op: Op, ctx: LowerContext) -> Step:
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if len(x.shape) != 4 or x.shape[0] != 1:
        raise unsupported(op, f"input shape {x.shape} is not 1xHxWxC")
    if x.quant.s != out.quant.s or x.quant.zp != out.quant.zp:
        raise unsupported(op, "input and output quantisation differ")
    window = window_of(op, ctx, op.attrs["filter_h"], op.attrs["filter_w"])
    act_min, act_max = activation_range(op.attrs["activation"], out.quant.s, out.quant.zp)
    family = kernels.AVERAGE_POOL if op.kind == "AVERAGE_POOL_2D" else kernels.MAX_POOL
    return Step(op, kernels.portable(family), PoolLayer(window, act_min, act_max),
                (TensorArg(op.inputs[0], "input"), TensorArg(op.outputs[0], "output", output=True)))

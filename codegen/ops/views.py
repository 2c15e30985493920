"""RESHAPE and SQUEEZE: same bytes, new shape. No code runs; the output is a view of the input."""
from __future__ import annotations

from mcunet.graph import Op
from mcunet.step import Step

from ..lower import LowerContext, lowers, unsupported


@lowers("RESHAPE", "SQUEEZE")
def lower_view(op: Op, ctx: LowerContext) -> Step:
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if x.size != out.size or x.dtype != out.dtype:
        raise unsupported(op, f"cannot view {x.shape} {x.dtype} as {out.shape} {out.dtype}")
    if x.quant is not None and out.quant is not None and \
            (x.quant.s != out.quant.s or x.quant.zp != out.quant.zp):
        raise unsupported(op, "a reshape that changes quantisation is not supported")
    return Step(op, None, view_of=op.inputs[0])

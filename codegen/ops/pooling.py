"""AVERAGE_POOL_2D and MAX_POOL_2D (input and output share scale and zero point)."""
from __future__ import annotations

from mcunet.graph import Op
from mcunet.quant import activation_range
from mcunet.shapes import window_padding

from ..step import STREAM_DEFAULTS, LowerContext, Step, TensorArg, lowers, unsupported


@lowers("AVERAGE_POOL_2D", "MAX_POOL_2D")
def lower_pool(op: Op, ctx: LowerContext) -> Step:
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if len(x.shape) != 4 or x.shape[0] != 1:
        raise unsupported(op, f"input shape {x.shape} is not 1xHxWxC")
    if x.quant.s != out.quant.s or x.quant.zp != out.quant.zp:
        raise unsupported(op, "input and output quantisation differ")
    _, ih, iw, c = x.shape
    _, oh, ow, _ = out.shape
    kh, kw = op.attrs["filter_h"], op.attrs["filter_w"]
    pad_top, pad_left = window_padding(op.attrs, ih, iw, kh, kw, oh, ow)
    act_min, act_max = activation_range(op.attrs["activation"], out.quant.s, out.quant.zp)
    params = {"ih": ih, "iw": iw, "c": c, "oh": oh, "ow": ow, "kh": kh, "kw": kw,
              "sh": op.attrs["stride_h"], "sw": op.attrs["stride_w"],
              "pad_top": pad_top, "pad_left": pad_left, "act_min": act_min, "act_max": act_max,
              **STREAM_DEFAULTS, "in_row": iw, "out_row": ow}
    template = "average_pool_s8.c.j2" if op.kind == "AVERAGE_POOL_2D" else "max_pool_s8.c.j2"
    return Step(op, template, params, [TensorArg(op.inputs[0], const=True), TensorArg(op.outputs[0])])

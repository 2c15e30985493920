"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: the layers with weights."""
from __future__ import annotations

import numpy as np

from mcunet.analysis import op_macs
from mcunet.graph import Op
from mcunet.layers import ConvLayer, DepthwiseLayer, FullyConnectedLayer, Window
from mcunet.quant import activation_range, conv_multipliers
from mcunet.shapes import window_padding
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported


def _weights(op: Op, ctx: LowerContext, channels: int):
    """(filter, bias, multiplier, shift) constant args of a conv or depthwise layer, and the
    range of the shifts as template parameters (the DSP kernels requantise with fewer
    instructions when every shift lies in [-31, -2])."""
    x, w = ctx.t(op.inputs[0]), ctx.t(op.inputs[1])
    out = ctx.t(op.outputs[0])
    if not w.is_const or w.dtype != "int8" or w.quant is None:
        raise unsupported(op, "the filter must be a constant int8 tensor with quantisation")
    bias_id = op.inputs[2] if len(op.inputs) > 2 else -1
    if bias_id >= 0:
        b = ctx.t(bias_id)
        if not b.is_const or b.dtype != "int32":
            raise unsupported(op, f"the bias must be a constant int32 tensor, not {b.dtype}")
        bias = b.data.astype(np.int32)
    else:
        bias = np.zeros(channels, dtype=np.int32)
    mult, shift = conv_multipliers(x.quant.s, w.quant.scale, out.quant.s, channels)
    # A channel with multiplier 0 outputs its zero point whatever its shift: give it the
    # shift -2 so it does not keep the layer off the DSP kernels' fast requantisation.
    shift = np.where(mult == 0, -2, shift).astype(np.int32)
    return [ctx.const("filter", w.data.astype(np.int8), "filter"),
            ctx.const("bias", bias, "bias"), ctx.const("multiplier", mult, "multiplier"),
            ctx.const("shift", shift, "shift")], \
        {"shift_min": int(np.min(shift)), "shift_max": int(np.max(shift))}


def _io_params(op: Op, ctx: LowerContext) -> dict:
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    act_min, act_max = activation_range(op.attrs["activation"], out.quant.s, out.quant.zp)
    return {"input_offset": -x.quant.zp, "output_offset": out.quant.zp,
            "act_min": act_min, "act_max": act_max}


def window_of(op: Op, ctx: LowerContext, kh: int, kw: int) -> Window:
    """The window of a conv, depthwise or pooling op on whole tensors."""
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if len(x.shape) != 4 or x.shape[0] != 1:
        raise unsupported(op, f"input shape {x.shape} is not 1xHxWxC")
    _, ih, iw, ic = x.shape
    _, oh, ow, oc = out.shape
    pad_top, pad_left = window_padding(op.attrs, ih, iw, kh, kw, oh, ow)
    return Window(ih=ih, iw=iw, ic=ic, oh=oh, ow=ow, oc=oc, kh=kh, kw=kw,
                  sh=op.attrs["stride_h"], sw=op.attrs["stride_w"],
                  dh=op.attrs.get("dilation_h", 1), dw=op.attrs.get("dilation_w", 1),
                  pad_top=pad_top, pad_left=pad_left, in_row=iw, out_row=ow)


def _check_symmetric(op: Op, ctx: LowerContext) -> None:
    w = ctx.t(op.inputs[1])
    if np.any(w.quant.zero_point != 0):
        raise unsupported(op, "int8 filters must be symmetric (zero point 0)")


def _io_args(op: Op, consts: list) -> tuple:
    return (TensorArg(op.inputs[0], "input"), *consts, TensorArg(op.outputs[0], "output", output=True))


@lowers("CONV_2D")
def lower_conv2d(op: Op, ctx: LowerContext) -> Step:
    oc, kh, kw, ic = ctx.t(op.inputs[1]).shape
    window = window_of(op, ctx, kh, kw)
    if window.ic != ic:
        raise unsupported(op, f"grouped convolution ({window.ic} input channels, filter "
                              f"depth {ic}) is not supported")
    _check_symmetric(op, ctx)
    consts, shifts = _weights(op, ctx, oc)
    layer = ConvLayer(window, **_io_params(op, ctx), **shifts)  # a residual ADD may fuse later
    return Step(op, kernels.portable(kernels.CONV), layer, _io_args(op, consts),
                macs=op_macs(ctx.graph, op))


@lowers("DEPTHWISE_CONV_2D")
def lower_depthwise(op: Op, ctx: LowerContext) -> Step:
    _, kh, kw, oc = ctx.t(op.inputs[1]).shape
    window = window_of(op, ctx, kh, kw)
    if oc % window.ic:
        raise unsupported(op, f"{oc} output channels is not a multiple of {window.ic} inputs")
    _check_symmetric(op, ctx)
    consts, shifts = _weights(op, ctx, oc)
    layer = DepthwiseLayer(window, **_io_params(op, ctx), **shifts,
                           depth_multiplier=oc // window.ic)
    return Step(op, kernels.portable(kernels.DEPTHWISE), layer, _io_args(op, consts),
                macs=op_macs(ctx.graph, op))


@lowers("FULLY_CONNECTED")
def lower_fully_connected(op: Op, ctx: LowerContext) -> Step:
    x, w, out = ctx.t(op.inputs[0]), ctx.t(op.inputs[1]), ctx.t(op.outputs[0])
    if op.attrs.get("weights_format", 0) != 0:
        raise unsupported(op, "shuffled weight formats are not supported")
    if len(w.shape) != 2 or not w.is_const or w.dtype != "int8" or w.quant is None:
        raise unsupported(op, "the filter must be a constant (units, depth) int8 tensor")
    units, depth = w.shape
    if x.size % depth:
        raise unsupported(op, f"input of {x.size} values is not a multiple of depth {depth}")
    per_channel = w.quant.per_axis
    bias = ctx.t(op.inputs[2]).data.astype(np.int32) if len(op.inputs) > 2 and op.inputs[2] >= 0 \
        else np.zeros(units, dtype=np.int32)
    # TFLite's reference path: acc * (input_scale * filter_scale / output_scale) in double.
    scale = np.array([float(x.quant.s) * float(s) / float(out.quant.s) for s in w.quant.scale],
                     dtype=np.float64)
    layer = FullyConnectedLayer(batches=x.size // depth, units=units, depth=depth,
                                per_channel=per_channel,
                                # The per-channel reference ignores filter zero points.
                                filter_offset=0 if per_channel else -w.quant.zp,
                                **_io_params(op, ctx))
    consts = [ctx.const("filter", w.data.astype(np.int8), "filter"),
              ctx.const("bias", bias, "bias"), ctx.const("scale", scale, "scale")]
    return Step(op, kernels.portable(kernels.FULLY_CONNECTED), layer, _io_args(op, consts),
                macs=op_macs(ctx.graph, op))

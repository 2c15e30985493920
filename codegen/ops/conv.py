"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: the layers with weights."""
from __future__ import annotations

import numpy as np

from mcunet.analysis import op_macs
from mcunet.graph import Op
from mcunet.layers import ConvLayer, DepthwiseLayer, FullyConnectedLayer, Window
from mcunet.quant import activation_range, conv_multipliers, double_parts, near_rescale, requantize
from mcunet.shapes import window_padding
from mcunet.step import Step, TensorArg

from .. import kernels
from ..lower import LowerContext, lowers, unsupported


def _weights(op: Op, ctx: LowerContext, channels: int, pad: int = 0, depthwise: bool = False):
    """(filter, bias, multiplier, shift) constant args of a conv or depthwise layer (the
    filter flat, followed by `pad` zero bytes), and the
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
    filt = np.concatenate([w.data.astype(np.int8).reshape(-1), np.zeros(pad, np.int8)])
    wabs = np.abs(w.data.astype(np.int64))
    wsum = wabs.reshape(-1, channels).sum(axis=0) if depthwise \
        else wabs.reshape(channels, -1).sum(axis=1)
    xmax = 128 + abs(int(x.quant.zp))
    act_min, act_max = activation_range(op.attrs["activation"], out.quant.s, out.quant.zp)
    bias, mult, shift = _constant_channels(bias, mult, shift, xmax * wsum, int(out.quant.zp),
                                           act_min, act_max)
    # Every partial sum of channel c's accumulator, bias + some taps' (x + offset) w, or
    # bias + offset sum w + some taps' x w where a kernel folds the offset into the bias, is
    # at most |bias| + (128 + |offset|) sum |w| in magnitude (the filter's last axis is the
    # channel for a depthwise filter, its first for a conv's).
    acc_bound = int(np.max(np.abs(bias.astype(np.int64)) + xmax * wsum))
    return [ctx.const("filter", filt, "filter"),
            ctx.const("bias", bias, "bias"), ctx.const("multiplier", mult, "multiplier"),
            ctx.const("shift", shift, "shift")], \
        {"shift_min": int(np.min(shift)), "shift_max": int(np.max(shift)),
         "acc_bound": acc_bound}


def _constant_channels(bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
                       spread: np.ndarray, out_zp: int, act_min: int, act_max: int):
    """Channels whose output is one value whatever the input (a bias of about 2^30, as a
    pruned channel of a quantisation-aware trained model carries) given smaller constants
    that compute the same value: every accumulator of channel c lies within spread[c] of its
    bias and requantisation is monotonic, so where both ends of that range give the same
    clamped output v, so does every accumulator between. The new constants put the range in
    the middle of v's rounding interval at a scale of 2^-(r+1) with spread < 2^r, checked at
    both ends again. A large bias keeps a layer off the DSP kernels' doubled accumulator
    (dsp_common.j2) and a shift below -30 off their fast requantisation; the outputs are
    bit-for-bit the same for every kernel, since all take these constants."""
    bias, mult, shift = bias.copy(), mult.copy(), shift.copy()

    def out(acc: int, m: int, sh: int) -> int:
        return min(max(requantize(acc, m, sh) + out_zp, act_min), act_max)

    for c in range(len(bias)):
        b, s_ = int(bias[c]), int(spread[c])
        if (abs(b) + s_ < (1 << 28) and shift[c] >= -30) or abs(b) + s_ >= (1 << 31) \
                or shift[c] > 0:
            continue
        v = out(b - s_, int(mult[c]), int(shift[c]))
        if out(b + s_, int(mult[c]), int(shift[c])) != v:
            continue
        r = max(1, s_.bit_length() + 1)
        nb = (v - out_zp) << (r + 1)
        if r > 30 or abs(nb) + s_ >= (1 << 28) or out(nb - s_, 1 << 30, -r) != v \
                or out(nb + s_, 1 << 30, -r) != v:
            continue
        bias[c], mult[c], shift[c] = nb, 1 << 30, -r
    return bias, mult, shift


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
    # The DSP kernel reads each channel's weights in words of four, the last word running
    # into the next channel's (times zeros in its scratch): (-K) % 4 zero bytes after the
    # last channel keep that word inside the array (at most 3 bytes of flash).
    consts, shifts = _weights(op, ctx, oc, pad=-(kh * kw * ic) % 4)
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
    consts, shifts = _weights(op, ctx, oc, depthwise=True)
    layer = DepthwiseLayer(window, **_io_params(op, ctx), **shifts,
                           depth_multiplier=oc // window.ic)
    return Step(op, kernels.portable(kernels.DEPTHWISE), layer, _io_args(op, consts),
                macs=op_macs(ctx.graph, op))


def fc_filter_words(w: np.ndarray) -> np.ndarray:
    """The (units, depth) int8 filter in the order the kernels read it, packed into 32-bit
    words (so the arrays are word-aligned): units in blocks of four (the last block holds
    the rest); in a block, for each group of four inputs, each unit's four weights side by
    side (one word per unit), then each unit's last depth % 4 weights; zero bytes pad the
    end to a whole word. The DSP kernel loads the four words of a group at once."""
    units, depth = w.shape
    d4 = depth - depth % 4
    parts = []
    for u0 in range(0, units, 4):
        block = w[u0:u0 + 4]
        groups = block[:, :d4].reshape(len(block), d4 // 4, 4).transpose(1, 0, 2)
        parts += [groups.reshape(-1), block[:, d4:].reshape(-1)]
    data = np.concatenate(parts).astype(np.int8)
    data = np.concatenate([data, np.zeros(-len(data) % 4, np.int8)])
    return data.view("<u4").astype(np.uint32)


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
    fixed_point = ctx.arithmetic == "tflm"
    near = None
    if fixed_point:
        # TF Lite Micro: the Q31 multiplier and shift of input_scale * filter_scale /
        # output_scale in double (one per unit when per channel), MultiplyByQuantizedMultiplier.
        scales = w.quant.scale if per_channel else w.quant.scale[:1]
        rescale, shift = conv_multipliers(x.quant.s, scales, out.quant.s, len(scales))
        rescale_name = "multiplier"
    else:
        # TFLite's reference path: round(acc * (input_scale * filter_scale / output_scale)) in
        # double, which the kernels reproduce in integers from the double's significand and
        # exponent.
        scales = [float(x.quant.s) * float(s) / float(out.quant.s) for s in w.quant.scale]
        parts = [double_parts(s) for s in scales]
        rescale = np.array([m for m, _ in parts], dtype=np.uint64)
        shift = np.array([e for _, e in parts], dtype=np.int32)
        rescale_name = "mantissa"
        # Its fast form where the scales allow (mcunet_round_scaled_near): one multiply per
        # output, the exact rounding only near a half.
        near = near_rescale(scales)
    # The per-channel reference ignores filter zero points.
    filter_offset = 0 if per_channel else -w.quant.zp
    io = _io_params(op, ctx)
    # sum (x + io)(w + fo) + bias = sum x (w + fo) + [bias + io sum (w + fo)]: the input
    # offset's share is a constant per unit, folded into the bias (int32 arithmetic wraps, as
    # the accumulator's does), so the kernels multiply raw inputs.
    wsum = w.data.astype(np.int64).sum(axis=1) + depth * filter_offset
    bias = ((bias.astype(np.int64) + io["input_offset"] * wsum + (1 << 31)) % (1 << 32)
            - (1 << 31)).astype(np.int32)
    layer = FullyConnectedLayer(batches=x.size // depth, units=units, depth=depth,
                                per_channel=per_channel, filter_offset=filter_offset,
                                **dict(io, input_offset=0), fixed_point=fixed_point,
                                near=near is not None)
    consts = [ctx.const("filter", fc_filter_words(w.data.astype(np.int8)), "filter"),
              ctx.const("bias", bias, "bias"), ctx.const(rescale_name, rescale, rescale_name),
              ctx.const("shift", shift.astype(np.int32), "shift")]
    if near:
        consts.append(ctx.const("near", np.array(near.words(), dtype=np.int32), "near"))
    return Step(op, kernels.portable(kernels.FULLY_CONNECTED), layer, _io_args(op, consts),
                macs=op_macs(ctx.graph, op))

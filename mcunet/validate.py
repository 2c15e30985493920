"""The validated graph: every rule a graph read from a .tflite file must satisfy, checked
once, right after reading and before anything else runs. Passes, lowerings and the planner
then trust the graph; a model that passes compiles to defined C.

What is checked, in this order (each failure is one sentence naming the op kind and index,
the tensor and the rule):

1. Structure: every tensor index of the subgraph's inputs and outputs and of every op's
   inputs and outputs is in range (-1 only where the op's input is optional); the subgraph
   has inputs and outputs, none listed twice; every op mcunet compiles has as many inputs and
   outputs as its operator takes (ops it does not compile are named, all at once, by the
   code generator, which alone knows what it supports).
2. Data flow, in file order (TFLite runs ops in file order: a model whose ops are out of
   order is rejected, never reordered): every input an op reads is a constant, a subgraph
   input or the output of an earlier op; no op reads its own output; no op writes a
   constant, a subgraph input or a tensor another op writes; every subgraph output is
   produced by an op or is a subgraph input.
3. Types: int8 activations with quantisation (the float and 16-bit model messages), and
   known types everywhere else.
4. Tensors: rank at most MAX_RANK; quantisation vectors of equal length, one value or one
   per element of the quantised dimension; int8 scales finite and positive and zero points
   in [-128, 127]; each activation at most MAX_TENSOR_BYTES and all of them together at most
   MAX_ACTIVATION_BYTES (a microcontroller has at most a few MiB of SRAM; the planner's work
   grows with these sizes).
5. Per op (RULES, keyed by op name): ranks, types, constants, quantisation, options (strides,
   dilations and windows in [1, MAX_WINDOW], padding, fused activations TFLite allows), the
   output shape TFLite's Prepare would compute (TFLite resizes an output to it; mcunet uses
   the file's shape, so they must agree) and the conditions TFLite's Prepare checks
   (e.g. FULLY_CONNECTED's bias scale, CONCATENATION's equal quantisation, SOFTMAX's output
   quantisation), plus requantisation multipliers mcunet's fixed-point arithmetic can hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import McunetError
from .graph import DTYPE_BYTES, Graph, Op, Tensor
from .quant import quantize_multiplier

MAX_RANK = 8
MAX_TENSOR_BYTES = 16 << 20  # one activation tensor
MAX_ACTIVATION_BYTES = 64 << 20  # every activation tensor together
MAX_WINDOW = 1 << 16  # strides, dilations, kernel sizes and dilated kernel extents, in pixels
# Requantisation multipliers (input scale x filter scale / output scale and the like) below
# 2^30: the fixed-point form q * 2^(shift - 31) then has a shift of at most 31.
MAX_MULTIPLIER = float(1 << 30)
MAX_REDUCED = 1 << 23  # values one MEAN or AVERAGE_POOL_2D output averages (int32 sums)
FUSED = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")  # fused activations on int8 outputs
FUSED_VALUES = {"RELU": (0.0,), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
ONE_256 = np.float32(1.0 / 256)


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def tensor_label(graph: Graph, tid: int) -> str:
    return f"tensor {tid} '{graph.tensors[tid].name}'"


class Check:
    """One op under validation: access to its tensors and the messages that name them."""

    def __init__(self, graph: Graph, op: Op):
        self.g, self.op, self.a = graph, op, op.attrs

    def fail(self, rule: str) -> McunetError:
        return McunetError(f"{self.op.kind} at index {self.op.index}: {rule}")

    def present(self, k: int) -> bool:
        return k < len(self.op.inputs) and self.op.inputs[k] >= 0

    def x(self, k: int) -> Tensor:
        return self.g.tensors[self.op.inputs[k]]

    def y(self) -> Tensor:
        return self.g.tensors[self.op.outputs[0]]

    def inp(self, k: int) -> str:
        return f"input {k} ({tensor_label(self.g, self.op.inputs[k])})"

    def out(self) -> str:
        return f"output 0 ({tensor_label(self.g, self.op.outputs[0])})"

    # --- tensors ---------------------------------------------------------------------------
    def rank(self, k: int | None, ranks: tuple[int, ...], what: str) -> None:
        t = self.y() if k is None else self.x(k)
        if len(t.shape) not in ranks:
            label = self.out() if k is None else self.inp(k)
            raise self.fail(f"{label} has rank {len(t.shape)}; {self.op.kind} needs {what}")

    def dtype(self, k: int | None, dtypes: tuple[str, ...]) -> Tensor:
        t = self.y() if k is None else self.x(k)
        if t.dtype not in dtypes:
            label = self.out() if k is None else self.inp(k)
            raise self.fail(f"{label} has type {t.dtype}; {self.op.kind} needs "
                            f"{' or '.join(dtypes)} here")
        return t

    def const(self, k: int, what: str) -> Tensor:
        t = self.x(k)
        if not t.is_const:
            raise self.fail(f"{self.inp(k)}, the {what}, is not a constant; mcunet needs "
                            "constant weights (give the model its weights as constants)")
        return t

    def not_const(self, k: int) -> Tensor:
        t = self.x(k)
        if t.is_const:
            raise self.fail(f"{self.inp(k)} is a constant; mcunet runs {self.op.kind} on "
                            "activations only (the converter folds ops on constants)")
        return t

    def per_tensor(self, k: int | None) -> Tensor:
        t = self.y() if k is None else self.x(k)
        label = self.out() if k is None else self.inp(k)
        if t.quant is None:
            raise self.fail(f"{label} has no quantisation parameters; {self.op.kind} needs them")
        if t.quant.per_axis:
            raise self.fail(f"{label} is quantised per axis ({t.quant.scale.size} scales); "
                            f"{self.op.kind} needs one scale and zero point")
        return t

    def int8(self, k: int | None) -> Tensor:
        """An int8 tensor with per-tensor quantisation."""
        self.dtype(k, ("int8",))
        return self.per_tensor(k)

    def out_shape(self, expected: tuple[int, ...], how: str) -> None:
        y = self.y()
        if tuple(y.shape) != tuple(expected):
            raise self.fail(f"{self.out()} has shape {tuple(y.shape)}, but {self.op.kind} "
                            f"computes {tuple(expected)} {how} (TFLite resizes its output to "
                            "that); the model is inconsistent")

    def same_shape_out(self) -> None:
        self.out_shape(tuple(self.x(0).shape), "from its input")

    def same_quant(self, k: int, why: str) -> None:
        x, y = self.x(k), self.y()
        if np.float32(x.quant.s) != np.float32(y.quant.s) or x.quant.zp != y.quant.zp:
            raise self.fail(f"{self.inp(k)} has scale {x.quant.s:g} and zero point {x.quant.zp} "
                            f"but {self.out()} has scale {y.quant.s:g} and zero point "
                            f"{y.quant.zp}; {why}")

    # --- options ---------------------------------------------------------------------------
    def options(self) -> None:
        if self.a.get("no_options"):
            raise self.fail("has no options table (strides, padding); the file is damaged or "
                            "was not written by TFLite's converter")

    def activation(self, allowed: tuple[str, ...] = FUSED) -> None:
        act = self.a.get("activation", "NONE")
        if act not in allowed:
            raise self.fail(f"fused activation {act} is not allowed here; {self.op.kind} on int8 "
                            f"takes {', '.join(allowed)}")
        y = self.y()
        for f in FUSED_VALUES.get(act, ()):
            q = np.float32(f) / np.float32(y.quant.s)
            if not abs(float(q)) < 2.0 ** 31:
                raise self.fail(f"{self.out()} has scale {y.quant.s:g}: the fused {act}'s bound "
                                f"{f:g} / scale does not fit in int32")

    def window_option(self, key: str) -> int:
        v = self.a.get(key)
        if not isinstance(v, int) or not 1 <= v <= MAX_WINDOW:
            raise self.fail(f"{key.replace('_', ' ')} is {v}; it must be 1 to {MAX_WINDOW}")
        return v

    def multiplier(self, real: float, what: str) -> None:
        if not (math.isfinite(real) and 0 <= real < MAX_MULTIPLIER):
            raise self.fail(f"the requantisation multiplier {what} = {real:g} is out of range "
                            f"(mcunet's fixed-point arithmetic holds 0 to 2^30); the scales of "
                            "its tensors are inconsistent")


# --- shape arithmetic (as TFLite's Prepare computes it) ----------------------------------------

def window_out(size: int, k: int, stride: int, dilation: int, padding: str) -> int:
    extent = (k - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size - extent) // stride + 1 if size >= extent else 0


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for p, q in zip(a, b):
        if p != q and 1 not in (p, q):
            return None
        out.append(max(p, q))
    return tuple(out)


def _spatial(c: Check, kh: int, kw: int, dilated: bool, channels: int) -> tuple[int, ...]:
    """Checks the window options of a conv or pool; returns the output shape TFLite computes."""
    c.options()
    if c.a["padding"] not in ("SAME", "VALID"):
        raise c.fail(f"{c.a['padding']} is not SAME or VALID")
    sh, sw = c.window_option("stride_h"), c.window_option("stride_w")
    dh = c.window_option("dilation_h") if dilated else 1
    dw = c.window_option("dilation_w") if dilated else 1
    for k, d, axis in ((kh, dh, "height"), (kw, dw, "width")):
        if not 1 <= k <= MAX_WINDOW:
            raise c.fail(f"the window {axis} is {k}; it must be 1 to {MAX_WINDOW}")
        if (k - 1) * d + 1 > MAX_WINDOW:
            raise c.fail(f"the dilated window {axis} ({k} taps, dilation {d}) spans "
                         f"{(k - 1) * d + 1} pixels, more than {MAX_WINDOW}")
    _, ih, iw, _ = c.x(0).shape
    oh = window_out(ih, kh, sh, dh, c.a["padding"])
    ow = window_out(iw, kw, sw, dw, c.a["padding"])
    if oh < 1 or ow < 1:
        raise c.fail(f"the {(kh - 1) * dh + 1}x{(kw - 1) * dw + 1} window does not fit the "
                     f"{ih}x{iw} input of {c.inp(0)} with VALID padding")
    return (1, oh, ow, channels)


def _image(c: Check) -> Tensor:
    """Input 0 of a windowed op: an int8 1xHxWxC activation."""
    x = c.int8(0)
    c.not_const(0)
    c.rank(0, (4,), "a 4-D (1, height, width, channels) input")
    if x.shape[0] != 1:
        raise c.fail(f"{c.inp(0)} has batch size {x.shape[0]}; mcunet compiles batch size 1")
    return x


def _filter(c: Check, k: int, rank: int, channels_axis: int, symmetric: bool) -> Tensor:
    w = c.const(k, "filter")
    c.dtype(k, ("int8",))
    c.rank(k, (rank,), f"a {rank}-D filter")
    if w.quant is None:
        raise c.fail(f"{c.inp(k)}, the filter, has no quantisation parameters")
    channels = w.shape[channels_axis]
    if w.quant.per_axis and (w.quant.axis != channels_axis or w.quant.scale.size != channels):
        raise c.fail(f"{c.inp(k)}, the filter, has {w.quant.scale.size} scales along dimension "
                     f"{w.quant.axis}; {c.op.kind} needs one, or one per output channel "
                     f"({channels}) along dimension {channels_axis}")
    if symmetric and np.any(w.quant.zero_point != 0):
        raise c.fail(f"{c.inp(k)}, the filter, has non-zero zero points; int8 filters must be "
                     "symmetric (zero point 0)")
    return w


def _bias(c: Check, k: int, channels: int) -> None:
    if not c.present(k):
        return
    b = c.const(k, "bias")
    c.dtype(k, ("int32",))
    if b.size != channels:
        raise c.fail(f"{c.inp(k)}, the bias, has {b.size} values for {channels} output channels")


def _conv_multipliers(c: Check, x: Tensor, w: Tensor, y: Tensor) -> None:
    for s in np.atleast_1d(w.quant.scale):
        c.multiplier(float(x.quant.s) * float(s) / float(y.quant.s),
                     "input scale x filter scale / output scale")


# --- the ops -----------------------------------------------------------------------------------

def _conv2d(c: Check) -> None:
    x = _image(c)
    w = _filter(c, 1, 4, 0, symmetric=True)
    oc, kh, kw, ic = w.shape
    if ic != x.shape[3]:
        raise c.fail(f"{c.inp(1)}, the filter, has depth {ic} but the input has {x.shape[3]} "
                     "channels; grouped convolution is not supported")
    _conv_output(c, x, w, kh, kw, oc)


def _conv_output(c: Check, x: Tensor, w: Tensor, kh: int, kw: int, oc: int) -> None:
    """What CONV_2D and DEPTHWISE_CONV_2D check alike: bias, output, window, activation and
    the per-channel multipliers."""
    _bias(c, 2, oc)
    y = c.int8(None)
    c.out_shape(_spatial(c, kh, kw, True, oc), "from its input, filter, strides and padding")
    c.activation()
    _conv_multipliers(c, x, w, y)


def _depthwise(c: Check) -> None:
    x = _image(c)
    w = _filter(c, 1, 4, 3, symmetric=True)
    one, kh, kw, oc = w.shape
    if one != 1:
        raise c.fail(f"{c.inp(1)}, the filter, has shape {w.shape}; DEPTHWISE_CONV_2D needs "
                     "(1, height, width, channels)")
    if oc % x.shape[3]:
        raise c.fail(f"{c.inp(1)}, the filter, has {oc} output channels, not a multiple of the "
                     f"input's {x.shape[3]}")
    _conv_output(c, x, w, kh, kw, oc)


def _fully_connected(c: Check) -> None:
    x = c.int8(0)
    c.not_const(0)
    w = _filter(c, 1, 2, 0, symmetric=False)
    units, depth = w.shape
    if c.a.get("weights_format", 0) != 0:
        raise c.fail(f"weights format {c.a['weights_format']} (shuffled) is not supported")
    if x.size % depth:
        raise c.fail(f"{c.inp(0)} holds {x.size} values, not a multiple of the filter's depth "
                     f"{depth}")
    _bias(c, 2, units)
    y = c.int8(None)
    if c.a.get("keep_num_dims"):
        if x.shape[-1] != depth:
            raise c.fail(f"{c.inp(0)} has last dimension {x.shape[-1]} but the filter's depth is "
                         f"{depth} (keep_num_dims needs them equal)")
        expected = tuple(x.shape[:-1]) + (units,)
    else:
        expected = (x.size // depth, units)
    c.out_shape(expected, "from its input and filter")
    c.activation()
    if not w.quant.per_axis and c.present(2):
        # TFLite's Prepare: |input scale x filter scale - bias scale| / output scale <= 0.02,
        # with the bias's per-tensor scale (0 when it has none or one per channel).
        b = c.x(2)
        bias_s = float(b.quant.scale[0]) if b.quant is not None and b.quant.scale.size == 1 \
            and b.quant.zero_point.size == 1 else 0.0
        product = float(np.float32(np.float32(x.quant.s) * np.float32(w.quant.s)))
        ratio = abs(product - bias_s) / float(y.quant.s)
        if not ratio <= 0.02:
            raise c.fail(f"the bias scale {bias_s:g} of {c.inp(2)} differs from input scale x "
                         f"filter scale = {product:g} by {ratio:.3g} output scales; TFLite "
                         "requires at most 0.02")
    _conv_multipliers(c, x, w, y)


def _binary(c: Check) -> None:
    a, b = c.int8(0), c.int8(1)
    y = c.int8(None)
    if a.is_const and b.is_const:
        raise c.fail(f"both inputs are constants ({c.inp(0)}, {c.inp(1)}); fold the "
                     f"{c.op.kind} when converting the model")
    shape = broadcast(a.shape, b.shape)
    if shape is None:
        raise c.fail(f"{c.inp(0)} of shape {a.shape} and {c.inp(1)} of shape {b.shape} do not "
                     "broadcast")
    if len(y.shape) > 4:
        raise c.fail(f"{c.out()} has rank {len(y.shape)}; mcunet's {c.op.kind} supports up to 4-D")
    c.out_shape(shape, "by broadcasting its inputs")
    c.activation()
    s1, s2, so = (np.float32(t.quant.s) for t in (a, b, y))
    if c.op.kind == "ADD":
        # TFLite's Prepare quantises this one as a multiplier below one (and aborts otherwise).
        twice_max = 2.0 * float(max(s1, s2))
        real = twice_max / float(np.float32(1 << 20) * so)
        if not (0.0 < real < 1.0 and quantize_multiplier(real)[1] <= 0):
            raise c.fail(f"the output multiplier 2 x max(input scales) / (2^20 x output scale) "
                         f"= {real:g} is not between 0 and 1, as TFLite's int8 ADD requires: "
                         f"the output scale {float(so):g} does not suit input scales "
                         f"{float(s1):g} and {float(s2):g}")
    else:
        c.multiplier(float(np.float32(np.float32(s1 * s2) / so)),
                     "input scale 1 x input scale 2 / output scale")


def _pool(c: Check) -> None:
    x = _image(c)
    y = c.int8(None)
    c.options()
    c.same_quant(0, "TFLite's int8 pooling requires equal quantisation")
    kh, kw = c.a.get("filter_h"), c.a.get("filter_w")
    for key in ("filter_h", "filter_w"):
        c.window_option(key)
    c.out_shape(_spatial(c, kh, kw, False, x.shape[3]), "from its input, window, strides and "
                "padding")
    c.activation()
    covered = min(kh, x.shape[1]) * min(kw, x.shape[2])
    if c.op.kind == "AVERAGE_POOL_2D" and covered > MAX_REDUCED:
        raise c.fail(f"one window averages up to {covered} pixels; the int32 sum holds at most "
                     f"{MAX_REDUCED}")
    del y


def _mean(c: Check) -> None:
    x = c.int8(0)
    y = c.int8(None)
    axes_t = c.const(1, "axes")
    if axes_t.dtype != "int32":
        raise c.fail(f"{c.inp(1)}, the axes, has type {axes_t.dtype}; TFLite's MEAN needs int32")
    if len(axes_t.shape) > 1:
        raise c.fail(f"{c.inp(1)}, the axes, has shape {axes_t.shape}; it must be a vector")
    rank = len(x.shape)
    axes = []
    for a in axes_t.data.reshape(-1).tolist():
        if not -rank <= a < rank:
            raise c.fail(f"axis {a} of {c.inp(1)} is out of range for the rank-{rank} input")
        a = a + rank if a < 0 else a
        if a not in axes:
            axes.append(a)
    if c.a.get("keep_dims"):
        expected = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        expected = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    c.out_shape(expected, f"as the mean over axes {sorted(axes)}")
    n = _prod(x.shape[a] for a in axes)
    if n > MAX_REDUCED:
        raise c.fail(f"a mean over {n} values would overflow TFLite's int32 sum (at most "
                     f"{MAX_REDUCED})")
    c.multiplier(float(x.quant.s) / float(y.quant.s), "input scale / output scale")


def _pad(c: Check) -> None:
    x = c.int8(0)
    c.dtype(None, ("int8",))
    y = c.per_tensor(None)
    rank = len(x.shape)
    if rank > 4:
        raise c.fail(f"{c.inp(0)} has rank {rank}; mcunet's {c.op.kind} supports up to 4-D")
    p = c.const(1, "paddings")
    c.dtype(1, ("int32", "int64"))
    if tuple(p.shape) != (rank, 2):
        raise c.fail(f"{c.inp(1)}, the paddings, has shape {tuple(p.shape)}; the rank-{rank} "
                     f"input needs ({rank}, 2)")
    pads = [(int(b), int(a)) for b, a in p.data.reshape(rank, 2).tolist()]
    if any(b < 0 or a < 0 for b, a in pads):
        raise c.fail(f"{c.inp(1)} holds negative paddings {pads}")
    c.out_shape(tuple(d + b + a for d, (b, a) in zip(x.shape, pads)), f"by padding {pads}")
    if c.op.kind == "PADV2" and c.present(2):
        v = c.const(2, "pad value")
        c.dtype(2, ("int8",))
        if v.size != 1:
            raise c.fail(f"{c.inp(2)}, the pad value, holds {v.size} values; it must be a scalar")
        if v.quant is None or np.float32(v.quant.s) != np.float32(y.quant.s) \
                or v.quant.zp != y.quant.zp:
            raise c.fail(f"{c.inp(2)}, the pad value, is not quantised like the output (TFLite "
                         "rejects it otherwise)")


def _reshape_target(c: Check) -> list[int] | None:
    """The new shape as TFLite's Reshape reads it: the shape input when it is an int32
    vector (None when that is computed at run time), else the new_shape option."""
    if c.present(1):
        s = c.x(1)
        if len(s.shape) == 1 and s.dtype == "int32":
            return [int(v) for v in s.data.reshape(-1)] if s.is_const else None
    new = c.a.get("new_shape")
    if new is None:
        return []
    return [] if list(new) == [0] else list(new)  # [0]: a scalar, in legacy models


def _reshape(c: Check) -> None:
    x, y = c.x(0), c.y()
    if len(c.op.inputs) > 1 and c.op.inputs[1] < 0:
        raise c.fail("input 1 (the shape) is omitted (-1); give the shape or leave it out")
    if x.dtype != y.dtype:
        raise c.fail(f"{c.inp(0)} has type {x.dtype} but {c.out()} has {y.dtype}")
    if x.size != y.size:
        raise c.fail(f"{c.inp(0)} of shape {x.shape} holds {x.size} values but {c.out()} of "
                     f"shape {y.shape} holds {y.size}")
    if x.quant is not None and y.quant is not None and (
            np.float32(x.quant.s) != np.float32(y.quant.s) or x.quant.zp != y.quant.zp):
        raise c.fail(f"{c.inp(0)} and {c.out()} are quantised differently; a reshape that "
                     "changes quantisation is not supported")
    if c.op.kind == "SQUEEZE":
        dims = c.a.get("squeeze_dims") or []
        rank = len(x.shape)
        drop = set()
        for d in dims:
            if not -rank <= d < rank or x.shape[d] != 1:
                raise c.fail(f"squeeze dimension {d} is not a dimension of size 1 of {c.inp(0)} "
                             f"of shape {x.shape}")
            drop.add(d % rank)
        if not dims:
            drop = {i for i, d in enumerate(x.shape) if d == 1}
        c.out_shape(tuple(d for i, d in enumerate(x.shape) if i not in drop),
                    "by squeezing its input")
        return
    target = _reshape_target(c)
    if target is None:
        return  # computed at run time (SHAPE/STRIDED_SLICE/PACK): checked when folded
    c.out_shape(reshape_shape(c, target, x.size), "from its new shape")


def reshape_shape(c: Check, target: list[int], size: int) -> tuple[int, ...]:
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise c.fail(f"the new shape {target} has negative dimensions (only one -1, the "
                     "inferred one, is allowed)")
    known = _prod(d for d in target if d != -1)
    if -1 in target:
        if known == 0 or size % known:
            raise c.fail(f"the new shape {target} does not fit the input's {size} values")
        target = [size // known if d == -1 else d for d in target]
    return tuple(target)


def _softmax(c: Check) -> None:
    x = c.int8(0)
    c.not_const(0)
    y = c.int8(None)
    if not x.shape:
        raise c.fail(f"{c.inp(0)} is a scalar; SOFTMAX needs at least one dimension")
    c.same_shape_out()
    if np.float32(y.quant.s) != ONE_256 or y.quant.zp != -128:
        raise c.fail(f"{c.out()} has scale {y.quant.s:g} and zero point {y.quant.zp}; TFLite's "
                     "int8 SOFTMAX needs scale 1/256 and zero point -128")
    beta = float(np.float32(c.a.get("beta", 0.0)))
    if not (math.isfinite(beta) and beta > 0):
        raise c.fail(f"beta is {beta:g}; it must be positive")
    # TFLite's Prepare quantises beta x input scale x 2^26 as a multiplier greater than one
    # (and aborts on anything else).
    real = min(beta * float(x.quant.s) * float(1 << 26), float((1 << 31) - 1))
    if not real > 1.0:
        raise c.fail(f"beta x input scale = {beta * float(x.quant.s):g} is too small for "
                     "TFLite's int8 softmax (it must exceed 2^-26)")


def _concat(c: Check) -> None:
    y = c.int8(None)
    ins = [c.int8(k) for k in range(len(c.op.inputs))]
    c.activation(("NONE",))
    rank = len(y.shape)
    axis = c.a.get("axis", 0)
    if not -rank <= axis < max(rank, 1):
        raise c.fail(f"axis {axis} is out of range for rank {rank}")
    axis %= max(rank, 1)
    for k, t in enumerate(ins):
        c.same_quant(k, "TFLite requires equal scale and zero point (insert a QUANTIZE to "
                        "requantise)")
        if len(t.shape) != rank or any(t.shape[d] != y.shape[d] for d in range(rank) if d != axis):
            raise c.fail(f"{c.inp(k)} of shape {t.shape} does not fit {c.out()} of shape "
                         f"{y.shape} along axis {axis}")
    expected = list(y.shape)
    if rank:
        expected[axis] = sum(t.shape[axis] for t in ins)
    c.out_shape(tuple(expected), f"by concatenating its inputs along axis {axis}")


def _quantize(c: Check) -> None:
    x = c.not_const(0)
    c.dtype(0, ("float32", "int8"))
    c.int8(None)
    c.same_shape_out()
    if x.dtype == "int8":
        c.per_tensor(0)
        c.multiplier(float(x.quant.s) / float(c.y().quant.s), "input scale / output scale")


def _dequantize(c: Check) -> None:
    c.not_const(0)
    c.int8(0)
    c.dtype(None, ("float32",))
    c.same_shape_out()


def _logistic(c: Check) -> None:
    c.int8(0)
    c.not_const(0)
    y = c.int8(None)
    c.same_shape_out()
    if np.float32(y.quant.s) != ONE_256:
        raise c.fail(f"{c.out()} has scale {y.quant.s!r}; TFLite requires 1/256 for int8 LOGISTIC")


def _tanh(c: Check) -> None:
    c.int8(0)
    c.not_const(0)
    y = c.int8(None)
    c.same_shape_out()
    if np.float32(y.quant.s) != np.float32(1.0 / 128) or y.quant.zp != 0:
        raise c.fail(f"{c.out()} has scale {y.quant.s!r} and zero point {y.quant.zp}; TFLite "
                     "requires 1/128 and 0 for int8 TANH")


def _hard_swish(c: Check) -> None:
    x, y = c.int8(0), c.int8(None)
    c.not_const(0)
    c.same_shape_out()
    hires = np.float32(np.float32(1.0 / 128) * np.float32(x.quant.s))
    c.multiplier(float(np.float32(hires / np.float32(y.quant.s))),
                 "input scale / (128 x output scale)")
    c.multiplier(float(np.float32(hires / np.float32(3.0 / 32768))),
                 "input scale / 128 / (3 / 32768)")


def _relu(c: Check) -> None:
    x, y = c.int8(0), c.int8(None)
    c.not_const(0)
    c.same_shape_out()
    c.multiplier(float(np.float32(np.float32(x.quant.s) / np.float32(y.quant.s))),
                 "input scale / output scale")
    for f in FUSED_VALUES[c.op.kind]:
        if not abs(float(np.float32(f) / np.float32(y.quant.s))) < 2.0 ** 31:
            raise c.fail(f"{c.out()} has scale {y.quant.s:g}: {c.op.kind}'s bound {f:g} / scale "
                         "does not fit in int32")


SHAPE_OUT_TYPES = {2: "int32", 4: "int64"}  # TensorType values TFLite's SHAPE writes


def _shape(c: Check) -> None:
    if c.a.get("no_options"):
        raise c.fail("has no ShapeOptions table, so it has no output type (TFLite rejects the "
                     "model); the file is damaged or was not written by TFLite's converter")
    out_type = c.a.get("out_type")
    if out_type not in SHAPE_OUT_TYPES:
        raise c.fail(f"has output type {out_type} (a TensorType); SHAPE writes int32 (2) or "
                     "int64 (4)")
    if c.y().dtype != SHAPE_OUT_TYPES[out_type]:
        raise c.fail(f"has output type {SHAPE_OUT_TYPES[out_type]} but {c.out()} is "
                     f"{c.y().dtype}; they must agree")
    c.dtype(None, ("int32", "int64"))
    c.out_shape((len(c.x(0).shape),), "(the rank of its input)")


def _strided_slice(c: Check) -> None:
    rank = len(c.x(0).shape)
    for k, what in ((1, "begin"), (2, "end"), (3, "strides")):
        t = c.dtype(k, ("int32",))
        if tuple(t.shape) != (rank,):
            raise c.fail(f"{c.inp(k)}, the {what}, has shape {t.shape}; the rank-{rank} input "
                         f"needs ({rank},)")
    if c.x(3).is_const and np.any(c.x(3).data == 0):
        raise c.fail(f"{c.inp(3)}, the strides, holds a zero stride")
    if c.a.get("ellipsis_mask") or c.a.get("new_axis_mask"):
        raise c.fail("ellipsis and new-axis masks cannot be folded")


def _pack(c: Check) -> None:
    first = c.x(0)
    for k in range(len(c.op.inputs)):
        t = c.x(k)
        if t.shape != first.shape or t.dtype != first.dtype:
            raise c.fail(f"{c.inp(k)} ({t.dtype} {t.shape}) differs from input 0 ({first.dtype} "
                         f"{first.shape}); PACK needs equal inputs")
    if c.a.get("values_count") != len(c.op.inputs):
        raise c.fail(f"values_count is {c.a.get('values_count')} but the op has "
                     f"{len(c.op.inputs)} inputs; TFLite requires them equal")
    rank = len(first.shape)
    axis = c.a.get("axis", 0)
    if not -(rank + 1) <= axis <= rank:
        raise c.fail(f"axis {axis} is out of range for packing rank-{rank} inputs")
    axis %= rank + 1
    c.dtype(None, (first.dtype,))
    c.out_shape(tuple(first.shape[:axis]) + (len(c.op.inputs),) + tuple(first.shape[axis:]),
                "by packing its inputs")


@dataclass(frozen=True)
class Rule:
    inputs: tuple[int, int | None]  # fewest and most inputs (None: any number)
    check: Callable[[Check], None]
    optional: tuple[int, ...] = ()  # inputs that may be omitted (-1)


# Per-op rules, keyed by op name: the ops mcunet compiles (exactly those with a lowering in
# mcunet.codegen, which tests/test_validate.py checks), then the shape-arithmetic ops that
# must fold away (every op has one output).
RULES: dict[str, Rule] = {
    "CONV_2D": Rule((2, 3), _conv2d, optional=(2,)),
    "DEPTHWISE_CONV_2D": Rule((2, 3), _depthwise, optional=(2,)),
    "FULLY_CONNECTED": Rule((2, 3), _fully_connected, optional=(2,)),
    "ADD": Rule((2, 2), _binary),
    "MUL": Rule((2, 2), _binary),
    "AVERAGE_POOL_2D": Rule((1, 1), _pool),
    "MAX_POOL_2D": Rule((1, 1), _pool),
    "MEAN": Rule((2, 2), _mean),
    "PAD": Rule((2, 2), _pad),
    "PADV2": Rule((2, 3), _pad, optional=(2,)),
    "RESHAPE": Rule((1, 2), _reshape, optional=(1,)),
    "SQUEEZE": Rule((1, 1), _reshape),
    "SOFTMAX": Rule((1, 1), _softmax),
    "CONCATENATION": Rule((1, None), _concat),
    "QUANTIZE": Rule((1, 1), _quantize),
    "DEQUANTIZE": Rule((1, 1), _dequantize),
    "LOGISTIC": Rule((1, 1), _logistic),
    "TANH": Rule((1, 1), _tanh),
    "HARD_SWISH": Rule((1, 1), _hard_swish),
    "RELU": Rule((1, 1), _relu),
    "RELU6": Rule((1, 1), _relu),
    "RELU_N1_TO_1": Rule((1, 1), _relu),
    "SHAPE": Rule((1, 1), _shape),
    "STRIDED_SLICE": Rule((4, 4), _strided_slice),
    "PACK": Rule((1, None), _pack),
}
# Ops that only feed compile-time shape arithmetic: they must fold away (passes.fold_constants).
FOLDABLE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK")
EDGE_OPS = ("QUANTIZE", "DEQUANTIZE")  # may touch float tensors (at the model's edges)


# --- the pass ----------------------------------------------------------------------------------

def validate(graph: Graph) -> None:
    """Raise McunetError for the first rule the graph breaks (see the module docstring)."""
    _structure(graph)
    _data_flow(graph)
    _types(graph)
    used = _used(graph)
    _tensors(graph, used)
    with np.errstate(all="ignore"):  # extreme scales overflow float32: the rules catch inf/nan
        for op in graph.ops:
            if op.kind in RULES:
                RULES[op.kind].check(Check(graph, op))


def check_op(graph: Graph, op: Op) -> None:
    """The per-op rules of one op again (after a pass changed its inputs, e.g. folded the
    shape of a RESHAPE)."""
    with np.errstate(all="ignore"):
        RULES[op.kind].check(Check(graph, op))


def _structure(graph: Graph) -> None:
    n = len(graph.tensors)
    if not graph.inputs:
        raise McunetError(f"'{graph.name}' has no inputs; mcunet compiles models that compute "
                          "outputs from inputs")
    if not graph.outputs:
        raise McunetError(f"'{graph.name}' has no outputs")
    for kind, tids in (("input", graph.inputs), ("output", graph.outputs)):
        for k, tid in enumerate(tids):
            if not 0 <= tid < n:
                raise McunetError(f"the model's {kind} {k} is tensor {tid}, but the model has "
                                  f"{n} tensors (0 to {n - 1}); the file is damaged")
            if tids.index(tid) != k:
                raise McunetError(f"the model lists {tensor_label(graph, tid)} as {kind} "
                                  f"{tids.index(tid)} and again as {kind} {k}")
    for op in graph.ops:
        rule = RULES.get(op.kind)
        where = f"{op.kind} at index {op.index}"
        if rule is None:
            # Not an operator mcunet compiles: the code generator names every such op of the
            # model at once (mcunet.codegen.lower.check_supported); its indices must be sound.
            if not op.outputs:
                raise McunetError(f"{where} has no outputs")
            for role, tids, optional in (("input", op.inputs, True), ("output", op.outputs, False)):
                for k, tid in enumerate(tids):
                    if not (0 <= tid < n or (optional and tid == -1)):
                        raise McunetError(f"{where}: {role} {k} is tensor {tid}, but the model "
                                          f"has {n} tensors (0 to {n - 1})")
            continue
        lo, hi = rule.inputs
        if not lo <= len(op.inputs) <= (hi if hi is not None else len(op.inputs)):
            need = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            raise McunetError(f"{where} has {len(op.inputs)} inputs; {op.kind} takes {need}")
        if len(op.outputs) != 1:
            raise McunetError(f"{where} has {len(op.outputs)} outputs; {op.kind} has one")
        for k, tid in enumerate(op.inputs):
            if tid == -1 and k in rule.optional:
                continue
            if not 0 <= tid < n:
                omitted = " (-1 marks an omitted input, which this one may not be)" \
                    if tid == -1 else ""
                raise McunetError(f"{where}: input {k} is tensor {tid}, but the model has {n} "
                                  f"tensors (0 to {n - 1}){omitted}")
        tid = op.outputs[0]
        if not 0 <= tid < n:
            raise McunetError(f"{where}: output 0 is tensor {tid}, but the model has {n} tensors "
                              f"(0 to {n - 1})")


def _data_flow(graph: Graph) -> None:
    inputs = set(graph.inputs)
    writer: dict[int, Op] = {}
    for op in graph.ops:
        for out in op.outputs:
            writer.setdefault(out, op)
    for k, tid in enumerate(graph.inputs):
        if graph.tensors[tid].is_const:
            raise McunetError(f"the model's input {k} ({tensor_label(graph, tid)}) is a constant")
    ready = set(inputs) | {i for i, t in enumerate(graph.tensors) if t.is_const}
    for op in graph.ops:
        where = f"{op.kind} at index {op.index}"
        for j, out in enumerate(op.outputs):
            label = f"output {j} ({tensor_label(graph, out)})"
            if graph.tensors[out].is_const:
                raise McunetError(f"{where}: {label} is a constant (it has data); an op cannot "
                                  "write a constant")
            if out in inputs:
                raise McunetError(f"{where}: {label} is a model input; an op cannot write a "
                                  "model input")
            first = writer[out]
            if first is not op or op.outputs.index(out) != j:
                other = f"{first.kind} at index {first.index}" if first is not op else "itself"
                raise McunetError(f"{where}: {label} is also written by {other}; each tensor "
                                  "has one writer")
        for k, tid in enumerate(op.inputs):
            if tid < 0 or tid in ready:
                continue
            what = f"{where}: input {k} ({tensor_label(graph, tid)})"
            if tid in op.outputs:
                raise McunetError(f"{what} is its own output; an op cannot read what it writes")
            if tid in writer:
                w = writer[tid]
                raise McunetError(f"{what} is written by {w.kind} at index {w.index}, which runs "
                                  "later: TFLite runs ops in file order, so the model reads a "
                                  "tensor before it is computed (mcunet does not reorder ops)")
            raise McunetError(f"{what} is neither a constant, a model input nor any op's "
                              "output; nothing computes it")
        ready.update(op.outputs)
    for k, tid in enumerate(graph.outputs):
        t = graph.tensors[tid]
        if t.is_const:
            raise McunetError(f"the model's output {k} ({tensor_label(graph, tid)}) is a "
                              "constant; mcunet compiles outputs that ops compute")
        if tid not in inputs and tid not in writer:
            raise McunetError(f"the model's output {k} ({tensor_label(graph, tid)}) is neither a "
                              "model input nor any op's output; nothing computes it")


def _types(graph: Graph) -> None:
    """Float or 16-bit activations anywhere but at the model's edges mean the model was not
    fully quantised to int8; every tensor an op uses must have a type mcunet knows."""
    for op in graph.ops:
        if op.kind in FOLDABLE_OPS or op.kind in EDGE_OPS:
            continue
        for tid in op.inputs + op.outputs:
            if tid < 0 or graph.tensors[tid].is_const:
                continue
            t = graph.tensors[tid]
            if t.dtype in ("float32", "float16", "float64"):
                raise McunetError(
                    f"'{graph.name}' is a float model ({op.kind} at index {op.index} works on "
                    f"{t.dtype} tensor '{t.name}'); mcunet needs a fully int8-quantised model: "
                    "convert with TFLite's converter, a representative dataset and "
                    "target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]")
            if t.dtype in ("int16", "uint8"):
                raise McunetError(
                    f"{op.kind} at index {op.index} works on {t.dtype} tensor '{t.name}'; "
                    "mcunet supports int8 activations only (no 16x8 or uint8 quantisation)")
            if t.dtype == "int8" and t.quant is None:
                raise McunetError(f"int8 tensor '{t.name}' of {op.kind} at index {op.index} "
                                  "has no quantisation parameters")
    for op in graph.ops:
        for k, tid in enumerate(op.inputs + op.outputs):
            if tid >= 0 and graph.tensors[tid].dtype not in DTYPE_BYTES:
                role = f"input {k}" if k < len(op.inputs) else "output 0"
                raise McunetError(f"{op.kind} at index {op.index}: {role} "
                                  f"({tensor_label(graph, tid)}) has type "
                                  f"{graph.tensors[tid].dtype}, which mcunet does not support")
    for kind, tids in (("input", graph.inputs), ("output", graph.outputs)):
        for k, tid in enumerate(tids):
            if graph.tensors[tid].dtype not in ("int8", "float32"):
                raise McunetError(f"the model's {kind} {k} ({tensor_label(graph, tid)}) has type "
                                  f"{graph.tensors[tid].dtype}; mcunet's models take and give "
                                  "int8 (or float32 around QUANTIZE/DEQUANTIZE)")


def _used(graph: Graph) -> list[int]:
    used = set(graph.inputs) | set(graph.outputs)
    for op in graph.ops:
        used.update(t for t in op.inputs + op.outputs if t >= 0)
    return sorted(used)


def _tensors(graph: Graph, used: list[int]) -> None:
    total = 0
    for tid in used:
        t = graph.tensors[tid]
        label = tensor_label(graph, tid)
        if len(t.shape) > MAX_RANK:
            raise McunetError(f"{label} has rank {len(t.shape)}; mcunet supports up to {MAX_RANK}")
        _quantisation(t, label)
        if t.is_const:
            continue
        nbytes = _prod(t.shape) * DTYPE_BYTES[t.dtype]
        if nbytes > MAX_TENSOR_BYTES:
            raise McunetError(f"{label} of shape {t.shape} needs {nbytes:,} bytes; mcunet plans "
                              f"activations of at most {MAX_TENSOR_BYTES >> 20} MiB each (a "
                              "microcontroller has a few MiB of SRAM)")
        total += nbytes
    if total > MAX_ACTIVATION_BYTES:
        raise McunetError(f"the model's activations need {total:,} bytes in all; mcunet plans at "
                          f"most {MAX_ACTIVATION_BYTES >> 20} MiB (a microcontroller has a few MiB "
                          "of SRAM)")


def _quantisation(t: Tensor, label: str) -> None:
    q = t.quant
    if q is None:
        return
    if q.zero_point.size != q.scale.size:
        raise McunetError(f"{label} has {q.scale.size} quantisation scales but "
                          f"{q.zero_point.size} zero points; they must match")
    if q.scale.size > 1:
        if not 0 <= q.axis < len(t.shape):
            raise McunetError(f"{label} is quantised along dimension {q.axis}, but it has rank "
                              f"{len(t.shape)}")
        if q.scale.size != t.shape[q.axis]:
            raise McunetError(f"{label} has {q.scale.size} scales along dimension {q.axis} of "
                              f"size {t.shape[q.axis]}; give one scale, or one per element")
    if t.dtype != "int8":
        return  # only int8 quantisation is used (a bias's scale only in FULLY_CONNECTED's rule)
    bad = [float(s) for s in q.scale if not (math.isfinite(float(s)) and float(s) > 0)]
    if bad:
        raise McunetError(f"{label} has quantisation scale {bad[0]:g}; scales must be finite "
                          "and positive")
    if np.any(q.zero_point < -128) or np.any(q.zero_point > 127):
        zp = int(q.zero_point[(q.zero_point < -128) | (q.zero_point > 127)][0])
        raise McunetError(f"{label} has zero point {zp}; int8 zero points lie in -128..127")

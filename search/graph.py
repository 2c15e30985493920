"""Build mcunet's Graph straight from an architecture, without TensorFlow.

The graph has exactly the ops, attributes, shapes, dtypes and tensor order that mcunet's
frontend reads from the int8 .tflite which search/export.py writes for the same
architecture (TF's converter folds batch norm into the convs, fuses ReLU6, turns global
average pooling into MEAN over axes (1, 2) and Dense+softmax into FULLY_CONNECTED and
SOFTMAX). So the planner measures peak SRAM and flash of a candidate in milliseconds, with
no conversion (tests/test_search_graph.py checks the bytes against a real conversion).

The quantisation is a placeholder: memory does not depend on it (but for one choice, see
LOGITS_SCALE). Per-channel scales are
random per layer so that no two constant arrays are equal: mcunet stores equal arrays once,
and the arrays of a trained network practically never coincide, so the flash measured here
is what an exported model needs (an upper bound if some arrays happened to coincide).
"""
from __future__ import annotations

import numpy as np

from mcunet import opschema
from mcunet.graph import Graph, Op, QuantParams, Tensor

from .space import Arch, SearchSpace

INPUT_SCALE, INPUT_ZP = 1.0 / 255.0, -128  # inputs normalised to [0, 1]
RELU6_SCALE, RELU6_ZP = 6.0 / 255.0, -128
# Puts the classifier's rescale (pooled scale x weight scale / this) inside the range where
# FULLY_CONNECTED takes its fast form and stores its `near` constants (quant.near_rescale:
# 2^-21 .. 2^-2), as trained classifiers' scales are: the flash is then that of the usual
# case, and an upper bound where a model's scales fall outside.
LOGITS_SCALE = 0.5


def _q(scale, zp=0, axis: int = 0) -> QuantParams:
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
    zp = np.broadcast_to(np.atleast_1d(np.asarray(zp, dtype=np.int64)), scale.shape).copy()
    return QuantParams(scale=scale, zero_point=zp, axis=axis)


class _Builder:
    def __init__(self, seed: int):
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []
        self.rng = np.random.default_rng(seed)

    def tensor(self, name: str, shape, dtype: str = "int8", quant=None, data=None) -> int:
        tid = len(self.tensors)
        self.tensors.append(Tensor(id=tid, name=name, shape=tuple(int(d) for d in shape),
                                   dtype=dtype, quant=quant, data=data))
        return tid

    def act(self, name: str, shape, relu6: bool) -> int:
        # Zero points differ between layers, as a trained network's do: the kernels bake
        # them in, and equal kernels are emitted once, so equal ones would under-count the
        # code of a trained network's library.
        zp = (7 * len(self.ops)) % 23 - 11
        scale, zp = (RELU6_SCALE, RELU6_ZP) if relu6 else (0.05 + 0.01 * len(self.ops), zp)
        return self.tensor(name, shape, quant=_q(scale, zp))

    def weights(self, name: str, shape, channels: int, axis: int, in_scale: float):
        """Random int8 weights and int32 bias with per-channel scales spread over powers of
        two (so multiplier and shift arrays differ between layers)."""
        w_scale = (2.0 ** -self.rng.integers(4, 12, channels)) * self.rng.uniform(1, 2, channels)
        w = self.tensor(f"{name}/filter", shape, "int8", _q(w_scale, 0, axis),
                        self.rng.integers(-127, 128, shape, dtype=np.int64).astype(np.int8))
        b = self.tensor(f"{name}/bias", (channels,), "int32", _q(w_scale * in_scale, 0),
                        self.rng.integers(-(1 << 16), 1 << 16, channels).astype(np.int32))
        return w, b

    def op(self, kind: str, inputs: list[int], outputs: list[int], **given) -> int:
        """An op with its options as the converter writes them (opschema's defaults for the
        ones not given)."""
        self.ops.append(Op(index=len(self.ops), kind=kind, inputs=inputs, outputs=outputs,
                           attrs=opschema.attrs(kind, **given)))
        return outputs[0]

    def conv(self, x: int, name: str, cout: int, kernel: int, stride: int, relu6: bool,
             depthwise: bool = False) -> int:
        _, h, w, cin = self.tensors[x].shape
        oh, ow = -(-h // stride), -(-w // stride)  # SAME padding
        in_scale = self.tensors[x].quant.s
        if depthwise:
            wt, bias = self.weights(name, (1, kernel, kernel, cin), cin, 3, in_scale)
        else:
            wt, bias = self.weights(name, (cout, kernel, kernel, cin), cout, 0, in_scale)
        out = self.act(name, (1, oh, ow, cout), relu6)
        attrs = dict(padding="SAME", stride_h=stride, stride_w=stride,
                     activation="RELU6" if relu6 else "NONE")
        if depthwise:
            return self.op("DEPTHWISE_CONV_2D", [x, wt, bias], [out], depth_multiplier=1, **attrs)
        return self.op("CONV_2D", [x, wt, bias], [out], **attrs)


def build_graph(space: SearchSpace, arch: Arch, seed: int = 0) -> Graph:
    """The int8 graph of arch as mcunet's frontend would read it from the exported model."""
    b = _Builder(seed)
    r = arch.resolution
    x = b.tensor("image", (1, r, r, space.in_channels), quant=_q(INPUT_SCALE, INPUT_ZP))
    graph_input = x
    x = b.conv(x, "stem", space.stem_out(arch), 3, space.stem_stride, True)
    for blk in space.blocks(arch):
        name = "first" if blk.index < 0 else f"b{blk.index}"
        y = x
        if blk.expand != 1:
            y = b.conv(y, f"{name}_expand", blk.hidden, 1, 1, True)
        y = b.conv(y, f"{name}_dw", blk.hidden, blk.kernel, blk.stride, True, depthwise=True)
        y = b.conv(y, f"{name}_project", blk.cout, 1, 1, False)
        if blk.residual:
            out = b.act(f"{name}_add", b.tensors[y].shape, False)
            y = b.op("ADD", [x, y], [out])
        x = y
    if space.head_channels:
        x = b.conv(x, "head", space.last_channels(arch), 1, 1, True)
    channels = b.tensors[x].shape[-1]
    axes = b.tensor("pool/axes", (2,), "int32", data=np.array([1, 2], dtype=np.int32))
    pooled = b.act("pool", (1, channels), False)
    b.op("MEAN", [x, axes], [pooled])
    n = space.num_classes
    wt, bias = b.weights("classifier", (n, channels), n, 0, b.tensors[pooled].quant.s)
    logits = b.tensor("logits", (1, n), quant=_q(LOGITS_SCALE, 0))
    b.op("FULLY_CONNECTED", [pooled, wt, bias], [logits])
    probs = b.tensor("probs", (1, n), quant=_q(1.0 / 256.0, -128))
    b.op("SOFTMAX", [logits], [probs], beta=1.0)
    return Graph(tensors=b.tensors, ops=b.ops, inputs=[graph_input], outputs=[probs],
                 name=f"{arch.key}.tflite")

"""Whole int8 networks as .tflite flatbuffers (built with tests/modelgen.py, no TensorFlow):
MBConv networks (MobileNetV2 / ProxylessNAS / MCUNet style: inverted residual blocks with
3x3, 5x5 or 7x7 depthwise layers, skips from the first block on), CIFAR-style ResNets, and
small random networks with skips and branches for the property tests. Deterministic from a
seed. Weights are random; each layer's output scale follows the spread its accumulators have,
so activations use the int8 range instead of collapsing to a few values.

    net = Net(seed=0)
    x = net.input(80, 80, 3)
    y = net.conv(x, 16, 3, stride=2)
    ...
    data = net.build(y)          # bytes of the .tflite file
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .modelgen import ModelBuilder

W_STD = 73.6  # the standard deviation of int8 weights drawn uniformly from [-127, 127]


@dataclass(frozen=True)
class Act:
    """An activation: its tensor handle, NHWC shape, scale, zero point and a guess of the
    standard deviation of its real values."""
    tid: int
    shape: tuple[int, ...]
    scale: float
    zp: int
    std: float


class Net:
    def __init__(self, seed: int = 0, name: str = "net"):
        self.m = ModelBuilder(description=name)
        self.rng = np.random.default_rng(seed)

    def _act(self, shape, std: float, relu: bool, name: str) -> Act:
        # Relu outputs sit in [0, ~4 std]; the others in about +-4 std around 0.
        if relu:
            scale, zp = max(4 * std, 1e-3) / 255, -128
        else:
            scale, zp = max(8 * std, 1e-3) / 255, int(self.rng.integers(-8, 9))
        tid = self.m.tensor(shape, "int8", scale=scale, zero_point=zp, name=name)
        return Act(tid, tuple(shape), scale, zp, std)

    def input(self, h: int, w: int, c: int) -> Act:
        std = 0.5
        tid = self.m.input((1, h, w, c), "int8", scale=1 / 128, zero_point=0, name="input")
        return Act(tid, (1, h, w, c), 1 / 128, 0, std)

    def conv(self, x: Act, cout: int, k: int, stride: int = 1, act: str = "RELU6",
             depthwise: bool = False, padding: str = "SAME", dilation: int = 1) -> Act:
        _, h, w, cin = x.shape
        if padding == "SAME":
            oh, ow = -(-h // stride), -(-w // stride)
        else:
            span = (k - 1) * dilation + 1
            oh, ow = (h - span) // stride + 1, (w - span) // stride + 1
        fan_in = k * k * (1 if depthwise else cin)
        channels = cin if depthwise else cout
        w_real_std = self.rng.uniform(0.7, 1.4, channels) / np.sqrt(fan_in)
        w_scale = w_real_std / W_STD
        shape = (1, k, k, cin) if depthwise else (cout, k, k, cin)
        wq = self.rng.integers(-127, 128, shape).astype(np.int8)
        out_std = float(x.std * np.mean(w_real_std) * np.sqrt(fan_in))
        bias_real = self.rng.normal(0, 0.2 * out_std, channels)
        bias_scale = x.scale * w_scale
        bq = np.round(bias_real / bias_scale).astype(np.int32)
        wt = self.m.const(wq, scale=w_scale, zero_point=[0] * channels,
                          quantized_dimension=3 if depthwise else 0)
        bt = self.m.const(bq, scale=bias_scale, zero_point=[0] * channels)
        relu = act in ("RELU", "RELU6")
        y = self._act((1, oh, ow, channels), out_std * (0.6 if relu else 1.0), relu,
                      f"{'dw' if depthwise else 'conv'}{len(self.m.ops)}")
        kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        extra = {"depth_multiplier": 1} if depthwise else {}
        self.m.op(kind, [x.tid, wt, bt], [y.tid], padding=padding, stride_h=stride,
                  stride_w=stride, dilation_h=dilation, dilation_w=dilation,
                  fused_activation=act, **extra)
        return y

    def add(self, a: Act, b: Act, act: str = "NONE") -> Act:
        std = float(np.hypot(a.std, b.std))
        y = self._act(a.shape, std, act != "NONE", f"add{len(self.m.ops)}")
        self.m.op("ADD", [a.tid, b.tid], [y.tid], fused_activation=act)
        return y

    def pool(self, x: Act, kind: str, k: int, stride: int, padding: str = "SAME",
             kw: int | None = None) -> Act:
        _, h, w, c = x.shape
        kw = k if kw is None else kw
        if padding == "SAME":
            oh, ow = -(-h // stride), -(-w // stride)
        else:
            oh, ow = (h - k) // stride + 1, (w - kw) // stride + 1
        tid = self.m.tensor((1, oh, ow, c), "int8", scale=x.scale, zero_point=x.zp,
                            name=f"pool{len(self.m.ops)}")
        self.m.op(kind, [x.tid], [tid], padding=padding, stride_h=stride, stride_w=stride,
                  filter_height=k, filter_width=kw)
        return Act(tid, (1, oh, ow, c), x.scale, x.zp, x.std)

    def concat(self, parts: list[Act]) -> Act:
        """Channel concatenation: the inputs are requantised to one scale first if they differ
        (as the converter does)."""
        scale, zp = parts[0].scale, parts[0].zp
        same = []
        for p in parts:
            if (p.scale, p.zp) != (scale, zp):
                tid = self.m.tensor(p.shape, "int8", scale=scale, zero_point=zp,
                                    name=f"requant{len(self.m.ops)}")
                self.m.op("QUANTIZE", [p.tid], [tid])
                p = Act(tid, p.shape, scale, zp, p.std)
            same.append(p)
        shape = (*parts[0].shape[:3], sum(p.shape[3] for p in parts))
        tid = self.m.tensor(shape, "int8", scale=scale, zero_point=zp, name=f"concat{len(self.m.ops)}")
        self.m.op("CONCATENATION", [p.tid for p in same], [tid], axis=3)
        return Act(tid, shape, scale, zp, max(p.std for p in parts))

    def head(self, x: Act, classes: int = 10, mean: bool = True) -> Act:
        """Global average pooling (MEAN, or AVERAGE_POOL_2D + RESHAPE), FULLY_CONNECTED, SOFTMAX."""
        _, h, w, c = x.shape
        if mean:
            axes = self.m.const(np.array([1, 2], np.int32))
            pooled = self.m.tensor((1, c), "int8", scale=x.scale, zero_point=x.zp, name="pooled")
            self.m.op("MEAN", [x.tid, axes], [pooled], keep_dims=False)
        else:
            p = self.pool(x, "AVERAGE_POOL_2D", h, max(h, w), "VALID", kw=w)
            shape = self.m.const(np.array([1, c], np.int32))
            pooled = self.m.tensor((1, c), "int8", scale=x.scale, zero_point=x.zp, name="pooled")
            self.m.op("RESHAPE", [p.tid, shape], [pooled])
        flat = Act(pooled, (1, c), x.scale, x.zp, x.std)
        w_real_std = 1 / np.sqrt(c)
        wq = self.rng.integers(-127, 128, (classes, c)).astype(np.int8)
        w_scale = w_real_std / W_STD
        wt = self.m.const(wq, scale=w_scale, zero_point=0)
        bt = self.m.const(np.zeros(classes, np.int32), scale=x.scale * w_scale, zero_point=0)
        std = flat.std
        logits = self.m.tensor((1, classes), "int8", scale=max(8 * std, 1e-3) / 255,
                               zero_point=0, name="logits")
        self.m.op("FULLY_CONNECTED", [pooled, wt, bt], [logits])
        probs = self.m.tensor((1, classes), "int8", scale=1 / 256, zero_point=-128, name="probs")
        self.m.op("SOFTMAX", [logits], [probs], beta=1.0)
        return Act(probs, (1, classes), 1 / 256, -128, 0.1)

    def build(self, out: Act) -> bytes:
        self.m.output(out.tid)
        return self.m.build()

    # ------------------------------------------------------------------ blocks
    def mbconv(self, x: Act, cout: int, k: int, stride: int, expand: int) -> Act:
        """An inverted residual block: 1x1 expansion (unless expand is 1), k x k depthwise,
        1x1 projection; the skip when the shapes allow it."""
        cin = x.shape[3]
        y = x
        if expand != 1:
            y = self.conv(y, cin * expand, 1)
        y = self.conv(y, 0, k, stride, depthwise=True)
        y = self.conv(y, cout, 1, act="NONE")
        if stride == 1 and cin == cout:
            y = self.add(x, y)
        return y

    def basic_block(self, x: Act, cout: int, stride: int) -> Act:
        """A ResNet basic block: two 3x3 convs, the skip through a 1x1 conv where the shape
        changes, ADD with RELU."""
        y = self.conv(x, cout, 3, stride, act="RELU")
        y = self.conv(y, cout, 3, 1, act="NONE")
        skip = x if stride == 1 and x.shape[3] == cout else self.conv(x, cout, 1, stride, act="NONE")
        return self.add(skip, y, act="RELU")


# ---------------------------------------------------------------------------------------------
# Whole networks


@dataclass(frozen=True)
class MBConvNet:
    """stem channels; then (expand, kernel, channels, blocks, first stride) per stage; the
    first stage's blocks keep the stem's shape, so its first block already has a skip."""
    resolution: int
    stem: int
    stages: tuple[tuple[int, int, int, int, int], ...]
    head: int
    seed: int = 0

    def build(self, name: str = "mbconv") -> bytes:
        net = Net(self.seed, name)
        x = net.input(self.resolution, self.resolution, 3)
        x = net.conv(x, self.stem, 3, 2)
        for expand, k, c, n, stride in self.stages:
            for i in range(n):
                x = net.mbconv(x, c, k, stride if i == 0 else 1, expand)
        x = net.conv(x, self.head, 1)
        return net.build(net.head(x))


@dataclass(frozen=True)
class ResNet:
    """A CIFAR-style ResNet: a 3x3 stem, `blocks` basic blocks per stage at the given widths."""
    resolution: int
    widths: tuple[int, ...]
    blocks: int
    seed: int = 0

    def build(self, name: str = "resnet") -> bytes:
        net = Net(self.seed, name)
        x = net.input(self.resolution, self.resolution, 3)
        x = net.conv(x, self.widths[0], 3, act="RELU")
        for s, c in enumerate(self.widths):
            for i in range(self.blocks):
                x = net.basic_block(x, c, 2 if s > 0 and i == 0 else 1)
        return net.build(net.head(x, mean=False))


def random_net(rng: np.random.Generator) -> bytes:
    """A small random network with skips and branches: convs, depthwise layers (1x1 to 7x7,
    strides 1 and 2, SAME or VALID), pooling, residual ADDs (fused or not), concatenations and
    activations, at odd sizes and channel counts."""
    net = Net(int(rng.integers(1 << 30)), "random")
    size = int(rng.integers(9, 24))
    x = net.input(size, int(rng.integers(9, 24)), int(rng.integers(1, 5)))
    x = net.conv(x, int(rng.integers(3, 10)), int(rng.choice([1, 3])), int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.choice(["mbconv", "basic", "branch", "pool", "conv"])
        c = x.shape[3]
        k = int(rng.choice([1, 3, 5, 7]))
        small = min(x.shape[1], x.shape[2]) < 6
        stride = 1 if small else int(rng.choice([1, 1, 2]))
        if kind == "mbconv":
            cout = c if rng.random() < 0.6 else int(rng.integers(2, 12))
            x = net.mbconv(x, cout, k, stride, int(rng.choice([1, 3, 4])))
        elif kind == "basic":
            x = net.basic_block(x, c if rng.random() < 0.6 else int(rng.integers(2, 12)), stride)
        elif kind == "branch":
            a = net.conv(x, int(rng.integers(2, 8)), 1)
            b = net.conv(net.conv(x, c, k, depthwise=True), int(rng.integers(2, 8)), 1)
            x = net.concat([a, b])
        elif kind == "pool" and not small:
            x = net.pool(x, str(rng.choice(["MAX_POOL_2D", "AVERAGE_POOL_2D"])),
                         int(rng.choice([2, 3])), int(rng.choice([1, 2])),
                         str(rng.choice(["SAME", "VALID"])))
        else:
            pad = "VALID" if min(x.shape[1:3]) > k + 2 and rng.random() < 0.3 else "SAME"
            x = net.conv(x, int(rng.integers(2, 14)), k, stride, padding=pad,
                         depthwise=bool(rng.random() < 0.3))
    return net.build(net.head(x, mean=bool(rng.random() < 0.5)))

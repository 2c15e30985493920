"""The corpus the measured tables are fitted on (scripts/fit_footprint_table.py,
scripts/fit_costmodel.py): networks of the search space (mcunet.search.graph, the same
graphs the architecture search plans), random layer stacks built with tests/modelgen.py, and
the single-op models of its test cases. The MLPerf Tiny models are deliberately not in it:
they are what the fits are checked on (scripts/bench_costmodel.py, bench_firmware.py).

    from corpus import corpus
    for name, graph in corpus(seed=0, networks=24, stacks=24): ...
"""
from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def search_networks(count: int, seed: int) -> list[tuple[str, object]]:
    """Architectures sampled from the search's spaces: grey 28x28 (Fashion-MNIST's) and colour
    images of 48-128 pixels (the ImageNet-style skeleton)."""
    from mcunet.search.graph import build_graph
    from mcunet.search.space import default_space

    rng = random.Random(seed)
    spaces = [default_space(1, 10, 28), default_space(3, 10, 96)]
    nets = []
    for k in range(count):
        space = spaces[k % 2]
        arch = space.sample(rng)
        nets.append((f"space{k}-{space.in_channels}x{arch.resolution}", build_graph(space, arch,
                                                                                   seed=k)))
    return nets


def random_stack(seed: int):
    """A random chain of conv / depthwise / pool / ADD / FC layers with realistic int8
    quantisation, as a .tflite built by tests/modelgen.py, read back as a Graph."""
    from mcunet.compiler import load_graph
    from tests.modelgen import ModelBuilder

    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    h = int(rng.choice([8, 12, 16, 20, 24, 32]))
    c = int(rng.choice([1, 2, 3, 4, 8, 16]))
    scale, zp = 0.02 + 0.05 * rng.random(), int(rng.integers(-20, 20))
    x = m.input((1, h, h, c), "int8", scale=scale, zero_point=zp)
    quant = {x: (scale, zp)}

    def act(shape, like=None):
        s, z = quant[like] if like is not None else (0.02 + 0.08 * rng.random(),
                                                     int(rng.integers(-128, 0)))
        t = m.tensor(shape, "int8", scale=s, zero_point=z)
        quant[t] = (s, z)
        return t

    def conv(x, shape, k, stride, oc, depthwise=False, act_fn="RELU6"):
        _, ih, iw, ic = shape
        oh, ow = -(-ih // stride), -(-iw // stride)
        chans = ic if depthwise else oc
        ws = list(2.0 ** -rng.integers(6, 10, chans) * rng.uniform(1, 2, chans))
        wshape = (1, k, k, chans) if depthwise else (oc, k, k, ic)
        w = m.const(rng.integers(-127, 128, wshape).astype(np.int8), scale=ws,
                    zero_point=[0] * chans, quantized_dimension=3 if depthwise else 0)
        b = m.const(rng.integers(-4000, 4000, chans).astype(np.int32),
                    scale=[s * 0.05 for s in ws], zero_point=[0] * chans)
        y = act((1, oh, ow, chans))
        m.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, w, b], [y], padding="SAME",
             stride_w=stride, stride_h=stride, fused_activation=act_fn,
             **({"depth_multiplier": 1} if depthwise else {}))
        return y, (1, oh, ow, chans)

    shape = (1, h, h, c)
    for _ in range(int(rng.integers(3, 8))):
        kind = rng.choice(["conv", "pw", "dw", "dw", "pool", "add"])
        _, ih, iw, ic = shape
        if kind == "conv":
            x, shape = conv(x, shape, int(rng.choice([1, 3, 5])), int(rng.choice([1, 2])),
                            int(rng.choice([4, 8, 12, 16, 24, 32])))
        elif kind == "pw":
            x, shape = conv(x, shape, 1, 1, int(rng.choice([8, 16, 24, 32, 48, 64])))
        elif kind == "dw":
            x, shape = conv(x, shape, int(rng.choice([3, 5, 7])), int(rng.choice([1, 1, 2])),
                            ic, depthwise=True)
        elif kind == "pool" and ih >= 4:
            y = act((1, ih // 2, iw // 2, ic), like=x)
            m.op(str(rng.choice(["AVERAGE_POOL_2D", "MAX_POOL_2D"])), [x], [y], padding="VALID",
                 stride_w=2, stride_h=2, filter_width=2, filter_height=2)
            x, shape = y, (1, ih // 2, iw // 2, ic)
        elif kind == "add":
            y, _ = conv(x, shape, 1, 1, ic, act_fn="NONE")
            s = act(shape)
            m.op("ADD", [x, y], [s])
            x = s
    _, ih, iw, ic = shape
    units = int(rng.choice([2, 10, 12, 32]))
    flat = act((1, ih * iw * ic), like=x)
    m.op("RESHAPE", [x], [flat], new_shape=[1, ih * iw * ic])
    ws = 2.0 ** -8
    w = m.const(rng.integers(-127, 128, (units, ih * iw * ic)).astype(np.int8), scale=[ws],
                zero_point=[0])
    b = m.const(rng.integers(-4000, 4000, units).astype(np.int32), scale=[ws * 0.1],
                zero_point=[0])
    logits = m.tensor((1, units), "int8", scale=0.2, zero_point=int(rng.integers(-10, 10)))
    m.op("FULLY_CONNECTED", [flat, w, b], [logits])
    probs = m.tensor((1, units), "int8", scale=1 / 256, zero_point=-128)
    m.op("SOFTMAX", [logits], [probs], beta=1.0)
    m.output(probs)
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(m.build())
        f.flush()
        return load_graph(f.name)


def dense_stack(seed: int):
    """A chain of one to three FULLY_CONNECTED layers of random widths (odd ones too), from a
    flat input or after a convolution whose output is the largest tensor (so that the
    variants whose scratch would otherwise set the peak are chosen as well)."""
    from mcunet.compiler import load_graph
    from tests.modelgen import ModelBuilder

    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    width = int(rng.choice([7, 16, 30, 64, 100, 129, 256, 490, 640]))
    zp = int(rng.integers(-20, 20))
    if rng.random() < 0.5:
        x = m.input((1, width), "int8", scale=0.05, zero_point=zp)
    else:  # conv 1x1 to 8 channels on an 8x8 map, then flatten: the conv's output is larger
        c = int(rng.choice([1, 3, 4]))
        x = m.input((1, 8, 8, c), "int8", scale=0.05, zero_point=zp)
        w = m.const(rng.integers(-127, 128, (8, 1, 1, c)).astype(np.int8), scale=[0.01] * 8,
                    zero_point=[0] * 8, quantized_dimension=0)
        b = m.const(rng.integers(-500, 500, 8).astype(np.int32), scale=[0.0005] * 8,
                    zero_point=[0] * 8)
        y = m.tensor((1, 8, 8, 8), "int8", scale=0.05, zero_point=-5)
        m.op("CONV_2D", [x, w, b], [y], padding="SAME", fused_activation="RELU")
        width = 8 * 8 * 8
        x = m.tensor((1, width), "int8", scale=0.05, zero_point=-5)
        m.op("RESHAPE", [y], [x], new_shape=[1, width])
    for _ in range(int(rng.integers(1, 4))):
        units = int(rng.choice([1, 2, 3, 5, 10, 12, 31, 64, 128]))
        ws = 2.0 ** -8
        w = m.const(rng.integers(-127, 128, (units, width)).astype(np.int8), scale=[ws],
                    zero_point=[0])
        b = m.const(rng.integers(-4000, 4000, units).astype(np.int32), scale=[ws * 0.05],
                    zero_point=[0])
        y = m.tensor((1, units), "int8", scale=0.1 + rng.random(),
                     zero_point=int(rng.integers(-10, 10)))
        m.op("FULLY_CONNECTED", [x, w, b], [y],
             fused_activation=str(rng.choice(["NONE", "RELU"])))
        x, width = y, units
    m.output(x)
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(m.build())
        f.flush()
        return load_graph(f.name)


def dense_stacks(count: int, seed: int) -> list[tuple[str, object]]:
    return [(f"dense{seed + k}", dense_stack(seed + k)) for k in range(count)]


def random_stacks(count: int, seed: int) -> list[tuple[str, object]]:
    found = []
    k = 0
    while len(found) < count:
        try:
            found.append((f"stack{seed + k}", random_stack(seed + k)))
        except Exception as exc:  # a random stack TFLite's shapes reject: skip it
            print(f"skipped stack {seed + k}: {exc}", file=sys.stderr)
        k += 1
    return found


def op_cases() -> list[tuple[str, object]]:
    """The single-op models of tests/test_modelgen.py that mcunet compiles."""
    from mcunet.compiler import load_graph
    from mcunet.codegen.lower import unsupported_ops
    from tests.test_modelgen import CASES

    found = []
    for name, build in CASES.items():
        m = build()[0]
        with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
            f.write(m.build())
            f.flush()
            try:
                graph = load_graph(f.name)
            except Exception:
                continue
        if not unsupported_ops(graph) and graph.ops:
            found.append((f"op-{name}", graph))
    return found


def corpus(seed: int = 0, networks: int = 24, stacks: int = 24, ops: bool = True):
    items = search_networks(networks, seed) + random_stacks(stacks, 1000 + seed)
    return items + (op_cases() if ops else [])

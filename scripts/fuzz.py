#!/usr/bin/env python3
"""Fuzz mcunet's model reader, validator and compiler with mutated .tflite models.

usage:
    python scripts/fuzz.py --cases 10000 --seed 1           # the campaign
    python scripts/fuzz.py --cases 300 --seed 7 --no-mlperf  # small models only (fast)
    python scripts/fuzz.py --cases 2000 --sanitize 50        # and simulate 50 successes
    python scripts/fuzz.py --seed 1 --case 1234 --show       # rerun one case, print its outcome

Corpus: the four MLPerf Tiny models (shared/models/mlperf-tiny beside the repository, or
$MCUNET_MODELS), small models built with tests/modelgen.py (convs, depthwise, pools, ADD,
MUL, FC, softmax, mean, pad, concat, reshape, activations, quantize, shape arithmetic), and
with --zoo the Keras MobileNets of scripts/model_zoo.py when its cache holds them.

Each case takes one corpus model and applies one to three mutations, most of them
structure-aware: the `tflite` package's flatbuffer reader locates the fields and vectors
(tensor shapes, types, buffers, quantisation scales and zero points, quantised dimensions,
operator inputs and outputs, opcode indices, builtin codes, options fields, vector lengths,
constant data such as biases, the subgraph's inputs and outputs, the order of operators) and
the mutation overwrites them in place with values chosen to break rules (out-of-range indices,
-1, self-loops, later ops' outputs, zero/negative/NaN/huge scales, huge dimensions, extreme
biases); the rest are byte flips, overwritten words and truncations.

Every case runs what `mcunet plan`/`compile` run (read and validate, passes, lowering, the
memory plan with --patch auto, the report tables, the rendered C; every other case with the
DSP kernels) in a worker process with a time limit and an address-space limit, and ends as
  ok      compiled
  error   mcunet's own McunetError (the message is kept; it must be one line)
  crash   any other exception (its site: file:line and type), or the worker died
  hang    over --timeout seconds of the worker's CPU time, or blocked (not computing) for
          BLOCKED_FACTOR times as long; the worker is killed. CPU time, so that a machine
          busy with other work does not turn slow cases into hangs.
  memory  MemoryError under the --memory limit
The summary prints the outcome counts, the distinct crash sites, the slowest case and the most
frequent error rules; crashing, hanging and memory cases are saved under --crashes. With
--sanitize N, N successes are built with -fsanitize=address,undefined and run on random rows
against TFLite's reference kernels (BUILTIN_REF), byte for byte.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import re
import resource
import struct
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MLPERF = ["vww_96_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
          "ad01_int8.tflite"]
OUTCOMES = ("ok", "error", "crash", "hang", "memory")
# The placement search tries every buffer order up to mcunet.memory.EXHAUSTIVE_BUFFERS buffers
# (7: 5040 orders, seconds per small model). The fuzzer lowers it to 4 by default: the same
# code runs, a hundred times faster (bounding the planner itself is issue 10's item 5).
EXHAUSTIVE = 4


def mlperf_dir() -> Path:
    return Path(os.environ.get("MCUNET_MODELS", ROOT.parent / "shared" / "models" / "mlperf-tiny"))


# --------------------------------------------------------------------------------------------
# The generated corpus (tests/modelgen.py): small valid models, bit-exact with TFLite.


def _q(rng, lo=0.02, hi=0.1):
    return float(np.float32(rng.uniform(lo, hi)))


def _conv(m, rng, x, shape_in, oc, k=3, stride=1, padding="SAME", act="RELU", dilation=1,
          depthwise=False, mult=1, out_zp=0, in_s=0.05):
    _, h, w, c = shape_in
    if depthwise:
        oc = c * mult
        wshape, axis = (1, k, k, oc), 3
    else:
        wshape, axis = (oc, k, k, c), 0
    scales = [float(np.float32(s)) for s in rng.uniform(0.005, 0.03, oc)]
    wt = m.const(rng.integers(-127, 128, wshape).astype(np.int8), scale=scales,
                 zero_point=[0] * oc, quantized_dimension=axis)
    b = m.const(rng.integers(-2000, 2000, oc).astype(np.int32),
                scale=[in_s * s for s in scales], zero_point=[0] * oc)
    ext = (k - 1) * dilation + 1
    oh = (h + stride - 1) // stride if padding == "SAME" else (h - ext) // stride + 1
    ow = (w + stride - 1) // stride if padding == "SAME" else (w - ext) // stride + 1
    out_shape = (1, oh, ow, oc)
    y = m.tensor(out_shape, "int8", scale=in_s * 0.02 * k * math.sqrt(c) * 3, zero_point=out_zp)
    kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    extra = {"depth_multiplier": mult} if depthwise else {}
    m.op(kind, [x, wt, b], [y], padding=padding, stride_h=stride, stride_w=stride,
         dilation_h=dilation, dilation_w=dilation, fused_activation=act, **extra)
    return y, out_shape, in_s * 0.02 * k * math.sqrt(c) * 3


def _mini_mobilenet(rng):
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 12, 12, 3), "int8", scale=0.05, zero_point=-3)
    y, s, sc = _conv(m, rng, x, (1, 12, 12, 3), 8)
    y, s, sc = _conv(m, rng, y, s, 0, depthwise=True, stride=2, act="RELU6", in_s=sc)
    y, s, sc = _conv(m, rng, y, s, 12, k=1, act="NONE", in_s=sc)
    p = m.tensor((1, 1, 1, 12), "int8", scale=sc, zero_point=0)
    m.op("AVERAGE_POOL_2D", [y], [p], padding="VALID", filter_height=s[1], filter_width=s[2],
         stride_h=1, stride_w=1)
    shape = m.const(np.array([1, 12], np.int32))
    r = m.tensor((1, 12), "int8", scale=sc, zero_point=0)
    m.op("RESHAPE", [p, shape], [r], new_shape=[1, 12])
    fw = m.const(rng.integers(-127, 128, (5, 12)).astype(np.int8), scale=0.01, zero_point=0)
    fb = m.const(rng.integers(-500, 500, 5).astype(np.int32), scale=sc * 0.01, zero_point=0)
    f = m.tensor((1, 5), "int8", scale=0.1, zero_point=4)
    m.op("FULLY_CONNECTED", [r, fw, fb], [f])
    return _softmax_output(m, f, 5, beta=1.0)


def _softmax_output(m, x, n: int, beta: float) -> bytes:
    """A SOFTMAX of the (1, n) tensor x as the model's output; the model's bytes."""
    o = m.tensor((1, n), "int8", scale=1 / 256, zero_point=-128)
    m.op("SOFTMAX", [x], [o], beta=beta)
    m.output(o)
    return m.build()


def _residual(rng):
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 8, 8, 4), "int8", scale=0.05, zero_point=0)
    a, s, sa = _conv(m, rng, x, (1, 8, 8, 4), 4, k=1, act="RELU")
    b, s, sb = _conv(m, rng, a, s, 0, depthwise=True, act="RELU6", in_s=sa)
    c, s, sc = _conv(m, rng, b, s, 4, k=1, act="NONE", in_s=sb)
    z = m.tensor(s, "int8", scale=0.08, zero_point=-2)
    m.op("ADD", [a, c], [z], fused_activation="RELU")  # a residual block: fused into the conv
    mp = m.tensor((1, 4, 4, 4), "int8", scale=0.08, zero_point=-2)
    m.op("MAX_POOL_2D", [z], [mp], padding="SAME", filter_height=2, filter_width=2,
         stride_h=2, stride_w=2)
    axes = m.const(np.array([1, 2], np.int32))
    mean = m.tensor((1, 1, 1, 4), "int8", scale=0.05, zero_point=1)
    m.op("MEAN", [mp, axes], [mean], keep_dims=True)
    m.output(mean)
    return m.build()


def _branches(rng):
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 6, 6, 3), "int8", scale=0.04, zero_point=5)
    pads = m.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    p = m.tensor((1, 8, 8, 3), "int8", scale=0.04, zero_point=5)
    m.op("PAD", [x, pads], [p])
    a, s, sa = _conv(m, rng, p, (1, 8, 8, 3), 4, padding="VALID", in_s=0.04)
    b, _, _ = _conv(m, rng, x, (1, 6, 6, 3), 4, k=1, act="NONE", in_s=0.04)
    b2 = m.tensor(s, "int8", scale=sa, zero_point=0)
    m.op("QUANTIZE", [b], [b2])
    a2 = m.tensor(s, "int8", scale=sa, zero_point=0)
    m.op("QUANTIZE", [a], [a2])
    c = m.tensor((1, 6, 6, 8), "int8", scale=sa, zero_point=0)
    m.op("CONCATENATION", [a2, b2], [c], axis=3)
    k = m.const(rng.integers(-100, 100, (1, 1, 1, 8)).astype(np.int8), scale=0.02, zero_point=3)
    y = m.tensor((1, 6, 6, 8), "int8", scale=0.05, zero_point=-7)
    m.op("MUL", [c, k], [y], fused_activation="RELU6")
    m.output(y)
    return m.build()


def _activations(rng):
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 4, 4, 6), "int8", scale=0.06, zero_point=-10)
    a = m.tensor((1, 4, 4, 6), "int8", scale=1 / 256, zero_point=-128)
    m.op("LOGISTIC", [x], [a])
    h = m.tensor((1, 4, 4, 6), "int8", scale=0.03, zero_point=-60)
    m.op("HARD_SWISH", [x], [h])
    r = m.tensor((1, 4, 4, 6), "int8", scale=0.02, zero_point=-128)
    m.op("RELU", [h], [r])
    r6 = m.tensor((1, 4, 4, 6), "int8", scale=0.025, zero_point=-128)
    m.op("RELU6", [x], [r6])
    q = m.tensor((1, 4, 4, 6), "int8", scale=0.02, zero_point=-128)
    m.op("QUANTIZE", [r6], [q])
    s = m.tensor((1, 4, 4, 6), "int8", scale=0.02, zero_point=-128)
    m.op("ADD", [q, r], [s])
    m.output(a)
    m.output(s)
    return m.build()


def _float_edges(rng):
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 5, 5, 2), "float32")
    q = m.tensor((1, 5, 5, 2), "int8", scale=0.02, zero_point=3)
    m.op("QUANTIZE", [x], [q])
    y, s, sy = _conv(m, rng, q, (1, 5, 5, 2), 3, k=3, stride=2, in_s=0.02)
    d = m.tensor(s, "float32")
    m.op("DEQUANTIZE", [y], [d])
    m.output(d)
    return m.build()


def _dense(rng):
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 3, 16), "int8", scale=0.05, zero_point=2)
    w = m.const(rng.integers(-127, 128, (10, 16)).astype(np.int8),
                scale=[float(np.float32(s)) for s in rng.uniform(0.005, 0.02, 10)],
                zero_point=[0] * 10, quantized_dimension=0)
    y = m.tensor((1, 3, 10), "int8", scale=0.1, zero_point=-5)
    m.op("FULLY_CONNECTED", [x, w, -1], [y], keep_num_dims=True, fused_activation="RELU")
    w2 = m.const(rng.integers(-127, 128, (4, 10)).astype(np.int8), scale=0.01, zero_point=1)
    b2 = m.const(rng.integers(-300, 300, 4).astype(np.int32), scale=0.001, zero_point=0)
    z = m.tensor((1, 3, 4), "int8", scale=0.05, zero_point=0)
    m.op("FULLY_CONNECTED", [y, w2, b2], [z], keep_num_dims=True)
    m.output(z)
    return m.build()


def _views(rng):
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 1, 6, 4), "int8", scale=0.05, zero_point=0)
    pads = m.const(np.array([[0, 0], [0, 0], [2, 1], [0, 0]], np.int32))
    v = m.const(np.array([7], np.int8), scale=0.05, zero_point=0)
    p = m.tensor((1, 1, 9, 4), "int8", scale=0.05, zero_point=0)
    m.op("PADV2", [x, pads, v], [p])
    s = m.tensor((1, 9, 4), "int8", scale=0.05, zero_point=0)
    m.op("SQUEEZE", [p], [s], squeeze_dims=[1])
    shape = m.const(np.array([1, 36], np.int32))
    r = m.tensor((1, 36), "int8", scale=0.05, zero_point=0)
    m.op("RESHAPE", [s, shape], [r], new_shape=[1, 36])
    return _softmax_output(m, r, 36, beta=0.5)


def shape_arithmetic(rng, slice_options: bool = True, values_count: int = 2,
                     dense: bool = True) -> bytes:
    """SHAPE -> STRIDED_SLICE -> PACK: the new shape of a RESHAPE, computed (and folded by
    mcunet). slice_options False gives STRIDED_SLICE an options table of another type (TFLite
    then reads no shrink mask); values_count is PACK's option."""
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 4, 4, 2), "int8", scale=0.05, zero_point=0)
    sh = m.tensor((4,), "int32")
    m.op("SHAPE", [x], [sh], out_type="int32")
    b, e, st = (m.const(np.array(v, np.int32)) for v in ([0], [1], [1]))
    batch = m.tensor((), "int32")
    if slice_options:
        m.op("STRIDED_SLICE", [sh, b, e, st], [batch], shrink_axis_mask=1)
    else:
        m.op("STRIDED_SLICE", [sh, b, e, st], [batch], options="ShapeOptions")
    rest = m.const(np.array(32, np.int32))
    new = m.tensor((2,), "int32")
    m.op("PACK", [batch, rest], [new], axis=0, values_count=values_count)
    r = m.tensor((1, 32), "int8", scale=0.05, zero_point=0)
    m.op("RESHAPE", [x, new], [r])
    if not dense:
        m.output(r)
        return m.build()
    w = m.const(rng.integers(-127, 128, (3, 32)).astype(np.int8), scale=0.01, zero_point=0)
    bias = m.const(rng.integers(-100, 100, 3).astype(np.int32), scale=0.0005, zero_point=0)
    y = m.tensor((1, 3), "int8", scale=0.04, zero_point=0)
    m.op("FULLY_CONNECTED", [r, w, bias], [y])
    m.output(y)
    return m.build()


def _dilated(rng):
    from tests.modelgen import ModelBuilder
    m = ModelBuilder()
    x = m.input((1, 9, 7, 2), "int8", scale=0.05, zero_point=0)
    y, s, sy = _conv(m, rng, x, (1, 9, 7, 2), 0, depthwise=True, mult=2, dilation=2,
                     act="RELU_N1_TO_1")
    z, s, sz = _conv(m, rng, y, s, 3, k=2, stride=2, padding="VALID", act="NONE", in_s=sy)
    a = m.tensor((1, s[1], s[2], 3), "int8", scale=sz, zero_point=0)  # pools keep the scale
    m.op("AVERAGE_POOL_2D", [z], [a], padding="SAME", filter_height=3, filter_width=3,
         stride_h=1, stride_w=1)
    m.output(a)
    return m.build()


GENERATED = {"mini_mobilenet": _mini_mobilenet, "residual": _residual, "branches": _branches,
             "activations": _activations, "float_edges": _float_edges, "dense": _dense,
             "views": _views, "shape_arithmetic": shape_arithmetic, "dilated": _dilated}


def generated_corpus(seed: int = 0) -> dict[str, bytes]:
    return {name: fn(np.random.default_rng(seed + k)) for k, (name, fn) in
            enumerate(GENERATED.items())}


def load_corpus(mlperf: bool | list[str] = True, zoo: bool = False,
                extra: list[Path] = ()) -> dict[str, bytes]:
    """The generated models, the MLPerf Tiny models (all, or those named), the zoo's, extra."""
    corpus = generated_corpus()
    if mlperf:
        for name in MLPERF if mlperf is True else mlperf:
            path = mlperf_dir() / (name if name.endswith(".tflite") else name + ".tflite")
            if not path.exists():
                raise SystemExit(f"fuzz.py: {path} is missing (set MCUNET_MODELS or --no-mlperf)")
            corpus[path.stem] = path.read_bytes()
    if zoo:
        sys.path.insert(0, str(ROOT / "scripts"))
        from model_zoo import default_dir
        for path in sorted(default_dir().glob("*.tflite")):
            corpus[path.stem] = path.read_bytes()
    for path in extra:
        corpus[path.stem] = path.read_bytes()
    return corpus


# --------------------------------------------------------------------------------------------
# Mutation sites: where the fields are in the flatbuffer, found with the tflite reader.


@dataclass
class Site:
    kind: str
    pos: int
    fmt: str  # struct format of the value in place
    ctx: dict = field(default_factory=dict)


def _field_pos(obj, slot: int) -> int | None:
    o = obj._tab.Offset(slot)
    return obj._tab.Pos + o if o else None


def _vector(obj, slot: int) -> tuple[int, int] | None:
    """(start, length) of vector field `slot`."""
    o = obj._tab.Offset(slot)
    if not o:
        return None
    return obj._tab.Vector(o), obj._tab.VectorLen(o)


def _table_fields(obj) -> list[tuple[int, int]]:
    """(position, width) of every scalar field present in a table (widths from the layout)."""
    tab = obj._tab
    vtable = tab.Pos - struct.unpack_from("<i", tab.Bytes, tab.Pos)[0]
    vt_size, obj_size = struct.unpack_from("<HH", tab.Bytes, vtable)
    offsets = sorted({struct.unpack_from("<H", tab.Bytes, vtable + 4 + 2 * k)[0]
                      for k in range((vt_size - 4) // 2)} - {0})
    result = []
    for k, off in enumerate(offsets):
        end = offsets[k + 1] if k + 1 < len(offsets) else obj_size
        result.append((tab.Pos + off, max(1, min(4, end - off))))
    return result


def find_sites(data: bytes) -> list[Site]:
    import tflite
    model = tflite.Model.GetRootAs(data, 0)
    sub = model.Subgraphs(0)
    n_t, n_b, n_c = sub.TensorsLength(), model.BuffersLength(), model.OperatorCodesLength()
    sites: list[Site] = []

    def vec_sites(obj, slot, kind, fmt, size, ctx):
        v = _vector(obj, slot)
        if v is None:
            return
        start, n = v
        sites.append(Site("vec_len", start - 4, "<I", {"n": n}))
        for k in range(n):
            sites.append(Site(kind, start + k * size, fmt, dict(ctx, k=k)))

    outputs = [sub.Operators(i).OutputsAsNumpy().tolist() if sub.Operators(i).OutputsLength()
               else [] for i in range(sub.OperatorsLength())]
    for i in range(n_t):
        t = sub.Tensors(i)
        vec_sites(t, 4, "dim", "<i", 4, {})
        for slot, kind, fmt in ((6, "dtype", "<b"), (8, "buffer", "<I")):
            pos = _field_pos(t, slot)
            if pos is not None:
                sites.append(Site(kind, pos, fmt, {"n": n_b}))
        q = t.Quantization()
        if q is not None:
            vec_sites(q, 8, "scale", "<f", 4, {})
            vec_sites(q, 10, "zero_point", "<q", 8, {})
            pos = _field_pos(q, 16)
            if pos is not None:
                sites.append(Site("qdim", pos, "<i", {}))
        b = t.Buffer()
        if 0 < b < n_b:
            v = _vector(model.Buffers(b), 4)
            if v is not None and v[1]:
                width = {2: 4, 9: 1, 4: 8}.get(t.Type())
                if width:
                    fmt = {4: "<i", 1: "<b", 8: "<q"}[width]
                    for k in random.Random(i).sample(range(v[1] // width), min(8, v[1] // width)):
                        sites.append(Site("const_value", v[0] + k * width, fmt, {}))
    ops = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        later = [o for outs in outputs[i + 1:] for o in outs]
        ctx = {"n": n_t, "own": outputs[i], "later": later}
        vec_sites(op, 6, "tensor_index", "<i", 4, ctx)
        vec_sites(op, 8, "tensor_index", "<i", 4, ctx)
        pos = _field_pos(op, 4)
        if pos is not None:
            sites.append(Site("opcode_index", pos, "<I", {"n": n_c}))
        pos = _field_pos(op, 10)
        if pos is not None:
            sites.append(Site("options_type", pos, "<B", {}))
        table = op.BuiltinOptions()
        if table is not None:
            holder = type("Options", (), {})()
            holder._tab = table
            try:
                for pos, width in _table_fields(holder):
                    sites.append(Site("option", pos, {1: "<b", 2: "<h", 3: "<h", 4: "<i"}[width], {}))
            except struct.error:
                pass
        ops.append(i)
    v = _vector(sub, 10)
    if v is not None and v[1] > 1:
        sites.append(Site("op_order", v[0], "<I", {"n": v[1]}))
    for slot in (6, 8):
        vec_sites(sub, slot, "tensor_index", "<i", 4, {"n": n_t, "own": [], "later": []})
    for i in range(n_c):
        code = model.OperatorCodes(i)
        for slot, fmt in ((4, "<b"), (10, "<i")):
            pos = _field_pos(code, slot)
            if pos is not None:
                sites.append(Site("builtin_code", pos, fmt, {}))
    return sites


# --------------------------------------------------------------------------------------------
# Mutations


INTERESTING_INTS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 31, 32, 33, 63, 64, 127, 128, 255, 256,
                    65535, 65536, 1 << 20, (1 << 31) - 1, -1, -2, -128, -129, -(1 << 31)]
INTERESTING_FLOATS = [0.0, -0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-38, 1e-45,
                      1e-12, 1e-9, 1e-6, 1e38, 3.4e38, 1.0 / 256, 1.0, 0.5, 2.0, 1000.0]
SUPPORTED_CODES = [0, 3, 4, 9, 14, 17, 18, 22, 25, 34, 39, 40, 43, 45, 49, 60, 77, 83, 114, 117,
                   6, 21, 28, 41, 53, 59, 76, 88, 99, 128, 1, 2, 5, 32, 255]


def _fits(fmt: str, v) -> bool:
    try:
        struct.pack(fmt, v)
        return True
    except struct.error:
        return False


def _site_value(site: Site, old, rng: random.Random):
    k = site.kind
    c = site.ctx
    if k == "tensor_index":
        own, later, n = c.get("own", []), c.get("later", []), c.get("n", 1)
        choices = [rng.randrange(max(n, 1)), rng.randrange(max(n, 1)), -1, n, n + rng.randrange(1, 5),
                   (1 << 31) - 1, -2]
        if own:
            choices.append(rng.choice(own))  # a self-loop
        if later:
            choices += [rng.choice(later)] * 2  # read before written
        return rng.choice(choices)
    if k == "dim":
        return rng.choice([0, -1, 1, 2, old + 1, max(old - 1, 0), old * 2, old * 3, 1 << 16,
                           1 << 20, (1 << 31) - 1, rng.randint(1, 64), 3, 4])
    if k == "dtype":
        return rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 16, 17, 9, 2, -1, 100])
    if k in ("buffer", "opcode_index"):
        n = c.get("n", 1)
        return rng.choice([0, rng.randrange(max(n, 1)), rng.randrange(max(n, 1)), n, n + 1,
                           (1 << 32) - 1, 1 << 31])
    if k == "scale":
        if rng.random() < 0.5 and math.isfinite(old):
            return old * rng.choice([2.0, 0.5, 1.001, 10.0, 0.1, 1e6, 1e-6, -1.0, 1e30, 1e-30])
        return rng.choice(INTERESTING_FLOATS)
    if k == "zero_point":
        return rng.choice([0, 1, -1, 127, -128, 128, -129, 1 << 40, old + 1, old - 3,
                           rng.randint(-128, 127)])
    if k == "qdim":
        return rng.choice([0, 1, 2, 3, 4, -1, 100, old + 1])
    if k == "const_value":
        bits = 8 * struct.calcsize(site.fmt)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return rng.choice([lo, hi, lo + 1, hi - 1, 0, -1, 1, hi // 2, lo // 2,
                           rng.randint(lo, hi)])
    if k == "vec_len":
        n = c.get("n", 0)
        return rng.choice([0, 1, n + 1, max(n - 1, 0), n * 2, 1 << 20, (1 << 32) - 1, 1 << 31])
    if k == "options_type":
        return rng.choice([0, 1, 2, 3, 5, 8, 10, 19, 25, 27, 42, 255, rng.randrange(130)])
    if k == "builtin_code":
        return rng.choice(SUPPORTED_CODES + [rng.randrange(210)])
    if k == "option":
        if site.fmt == "<i" and rng.random() < 0.25:
            return struct.unpack("<i", struct.pack("<f", rng.choice(INTERESTING_FLOATS)))[0]
        return rng.choice(INTERESTING_INTS + [old + 1, old - 1, old * 2])
    return old


def _mutate_site(buf: bytearray, site: Site, rng: random.Random) -> str:
    if site.kind == "op_order":
        n = site.ctx["n"]
        i, j = rng.sample(range(n), 2)
        pi, pj = site.pos + 4 * i, site.pos + 4 * j
        ti = pi + struct.unpack_from("<I", buf, pi)[0]
        tj = pj + struct.unpack_from("<I", buf, pj)[0]
        struct.pack_into("<I", buf, pi, tj - pi)
        struct.pack_into("<I", buf, pj, ti - pj)
        return f"swap operators {i} and {j}"
    if site.pos < 0 or site.pos + struct.calcsize(site.fmt) > len(buf):
        return "no-op"
    old = struct.unpack_from(site.fmt, buf, site.pos)[0]
    new = _site_value(site, old, rng)
    if site.fmt == "<f":
        new = float(new)
    elif not isinstance(new, int) or not _fits(site.fmt, new):
        bits = 8 * struct.calcsize(site.fmt)
        new = int(new) & ((1 << bits) - 1)
        if site.fmt[1].islower() and new >= 1 << (bits - 1):
            new -= 1 << bits
    struct.pack_into(site.fmt, buf, site.pos, new)
    return f"{site.kind} @{site.pos}: {old!r} -> {new!r}"


def _mutate_bytes(buf: bytearray, rng: random.Random) -> tuple[bytearray, str]:
    r = rng.random()
    if r < 0.35:
        for _ in range(rng.randint(1, 8)):
            p = rng.randrange(len(buf))
            buf[p] ^= 1 << rng.randrange(8)
        return buf, "bit flips"
    if r < 0.6:
        p = rng.randrange(max(len(buf) - 4, 1))
        struct.pack_into("<i", buf, p, rng.choice(INTERESTING_INTS))
        return buf, f"word @{p}"
    if r < 0.8:
        n = rng.randrange(8, len(buf))
        return buf[:n], f"truncate to {n}"
    p = rng.randrange(len(buf))
    k = rng.randint(1, 16)
    if rng.random() < 0.5:
        return buf[:p] + bytearray(rng.randbytes(k)) + buf[p:], f"insert {k} @{p}"
    return buf[:p] + buf[p + k:], f"delete {k} @{p}"


_SITES: dict[str, list[Site]] = {}


def make_case(corpus: dict[str, bytes], seed: int, index: int) -> tuple[str, bytes, list[str]]:
    """Case `index` of a campaign: (corpus model name, mutated bytes, what was mutated).
    Deterministic in (seed, index), so any case can be rerun alone."""
    rng = random.Random(seed * 1_000_003 + index)
    name = rng.choice(sorted(corpus))
    buf = bytearray(corpus[name])
    if name not in _SITES:
        _SITES[name] = find_sites(corpus[name])
    sites = _SITES[name]
    notes = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        if rng.random() < 0.85 and sites:
            notes.append(_mutate_site(buf, rng.choice(sites), rng))
    if rng.random() < 0.2 or not notes:
        buf, note = _mutate_bytes(buf, rng)
        notes.append(note)
    return name, bytes(buf), notes


# --------------------------------------------------------------------------------------------
# Running cases


def compile_case(data: bytes, dsp: bool):
    """What `mcunet plan` and `compile` run on a model (no files written)."""
    from mcunet.compiler import compile_graph
    from mcunet.frontend import parse_tflite
    from mcunet.memory import verify
    from mcunet.passes import run_passes
    from mcunet.report import inspect_table, io_lines, plan_table, summary_lines

    graph = run_passes(parse_tflite(data, name="case.tflite"))
    io_lines(graph)
    inspect_table(graph)
    compiled = compile_graph(graph, patch="auto", target="cortex-m4" if dsp else "host")
    plan_table(compiled)
    summary_lines(compiled)
    compiled.summary()
    compiled.layers
    verify(compiled.plan)
    compiled.library()
    return compiled


def _crash_site(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if str(ROOT) in f.filename and "scripts/fuzz.py" not in f.filename] or tb
    f = frames[-1]
    return f"{Path(f.filename).relative_to(ROOT) if str(ROOT) in f.filename else f.filename}:" \
           f"{f.lineno} ({f.name}) {type(exc).__name__}"


def run_one(data: bytes, dsp: bool) -> tuple[str, str]:
    from mcunet.errors import McunetError
    try:
        compiled = compile_case(data, dsp)
        return "ok", f"{len(compiled.steps)} steps, arena {compiled.plan.arena_bytes}"
    except McunetError as exc:
        return "error", str(exc)
    except MemoryError as exc:
        return "memory", _crash_site(exc)
    except RecursionError as exc:
        return "crash", _crash_site(exc)
    except Exception as exc:  # noqa: BLE001 - any other exception is what we look for
        return "crash", _crash_site(exc) + "\n" + "".join(traceback.format_exception(exc))[-3000:]


def sanitize_one(data: bytes, dsp: bool, seed: int) -> tuple[str, str]:
    """Build a compiling case with ASan/UBSan, run it on random rows (and both ends of the
    input range) and compare every byte with TFLite's reference kernels."""
    from mcunet.errors import McunetError
    from mcunet.reference import reference_outputs
    from mcunet.host import build_host, random_inputs

    compiled = compile_case(data, dsp)
    inputs = random_inputs(compiled.graph, 3, seed)
    for x in inputs:
        if x.dtype == np.int8:
            x[0], x[1] = -128, 127
    try:
        expected = reference_outputs(data, inputs)
    except (RuntimeError, ValueError) as exc:
        return "TFLITE-REJECTS", str(exc).splitlines()[0][:300]
    try:
        ours, _ = build_host(compiled, sanitize=True, extra_flags=["-O1"]).run(inputs)
    except McunetError as exc:
        return "SANITIZER", str(exc)[-1500:]
    for k, (a, b) in enumerate(zip(ours, expected)):
        if a.shape != b.shape or not np.array_equal(a.view(np.uint8), b.view(np.uint8)):
            n = int(np.count_nonzero(a.reshape(-1) != b.reshape(-1))) if a.shape == b.shape else -1
            return "MISMATCH", f"output {k}: {n} of {a.size} values differ (shapes {a.shape}, {b.shape})"
    return "bit-exact", ""


def _worker(conn, memory_bytes: int, exhaustive: int) -> None:
    import warnings

    import mcunet.memory
    mcunet.memory.EXHAUSTIVE_BUFFERS = exhaustive
    # A warning (numpy's overflow, say) would print on a user's terminal: count it as a crash.
    warnings.simplefilter("error", RuntimeWarning)
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        job = conn.recv()
        if job is None:
            return
        index, data, dsp, kind = job
        start = time.perf_counter()
        if kind == "sanitize":
            try:
                outcome, detail = sanitize_one(data, dsp, index)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                outcome, detail = "ERROR", "".join(traceback.format_exception(exc))[-1500:]
        else:
            outcome, detail = run_one(data, dsp)
        conn.send((index, outcome, detail, time.perf_counter() - start))


@dataclass
class Result:
    index: int
    model: str
    notes: list[str]
    outcome: str
    detail: str
    seconds: float
    data: bytes = b""  # kept for crashes, hangs and memory blow-ups (make_case rebuilds any)


BLOCKED_FACTOR = 6  # wall-clock limit of a case, in --timeout units (a case that blocks)
POLL_S = 0.25  # how often busy workers' CPU time is read


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process and its waited-for children have used (Linux: /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the name: state is field 3; utime, stime, cutime, cstime are fields 14-17
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Pool:
    """Worker processes (forked: the modules are imported once) with a per-case time limit;
    a worker over time is killed and replaced. clock "cpu": the limit is on the worker's own
    CPU time (and BLOCKED_FACTOR times it on the wall clock, for a case that blocks); "wall":
    on the wall clock (the sanitizer runs, whose time is spent in child processes)."""

    def __init__(self, jobs: int, timeout: float, memory_bytes: int, exhaustive: int,
                 clock: str = "cpu"):
        self.ctx = multiprocessing.get_context("fork")
        self.timeout, self.memory, self.exhaustive = timeout, memory_bytes, exhaustive
        self.clock = clock
        self.workers = [self._start() for _ in range(jobs)]

    def _start(self):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker, args=(child, self.memory, self.exhaustive), daemon=True)
        p.start()
        child.close()
        return {"proc": p, "conn": parent, "job": None, "since": 0.0, "cpu": None}

    def _over(self, w, now: float) -> str | None:
        """Why a busy worker's case is a hang, or None."""
        wall = now - w["since"]
        if self.clock == "cpu" and w["cpu"] is not None:
            used = cpu_seconds(w["proc"].pid)
            if used is not None and used - w["cpu"] >= self.timeout:
                return f"over {self.timeout:g} s of CPU"
            if wall >= BLOCKED_FACTOR * self.timeout:
                return f"over {BLOCKED_FACTOR * self.timeout:g} s (blocked)"
            return None
        return f"over {self.timeout:g} s" if wall >= self.timeout else None

    def run(self, jobs):
        """Yield (job key, outcome, detail, seconds) for every (key, data, dsp, kind) in jobs."""
        jobs = iter(jobs)
        pending = True
        while True:
            for w in self.workers:
                if w["job"] is None and pending:
                    job = next(jobs, None)
                    if job is None:
                        pending = False
                        continue
                    w["job"], w["since"] = job[0], time.perf_counter()
                    w["cpu"] = cpu_seconds(w["proc"].pid) if self.clock == "cpu" else None
                    w["conn"].send(job)
            busy = [w for w in self.workers if w["job"] is not None]
            if not busy:
                return
            if self.clock == "cpu":
                wait_s = POLL_S
            else:
                wait_s = max(0.0, min(w["since"] for w in busy) + self.timeout - time.perf_counter())
            ready = wait([w["conn"] for w in busy], timeout=wait_s)
            now = time.perf_counter()
            for w in list(busy):
                if w["conn"] in ready:
                    try:
                        index, outcome, detail, seconds = w["conn"].recv()
                    except (EOFError, OSError):
                        code = w["proc"].exitcode
                        yield w["job"], "crash", f"worker died (exit {code})", now - w["since"]
                        self._replace(w)
                        continue
                    w["job"] = None
                    yield index, outcome, detail, seconds
                elif (why := self._over(w, now)) is not None:
                    yield w["job"], "hang", why, now - w["since"]
                    self._replace(w)

    def _replace(self, w):
        w["proc"].kill()
        w["proc"].join()
        w["conn"].close()
        w.update(self._start())

    def close(self):
        for w in self.workers:
            try:
                w["conn"].send(None)
            except OSError:
                pass
            w["proc"].join(timeout=5)
            if w["proc"].is_alive():
                w["proc"].kill()


def campaign(corpus: dict[str, bytes], cases: int, seed: int, jobs: int = 1,
             timeout: float = 10.0, memory_mib: int = 4096, first: int = 0,
             exhaustive: int = EXHAUSTIVE, progress: int = 0) -> list[Result]:
    """Run cases first .. first + cases - 1; results in case order. With progress N, a line
    on stderr every N cases."""
    made = {}

    def job_list():
        for i in range(first, first + cases):
            name, data, notes = make_case(corpus, seed, i)
            made[i] = (name, notes, data)
            yield i, data, i % 2 == 1, "compile"

    pool = Pool(jobs, timeout, memory_mib << 20, exhaustive)
    results = []
    try:
        start = time.perf_counter()
        for index, outcome, detail, seconds in pool.run(job_list()):
            name, notes, data = made.pop(index)
            keep = data if outcome in ("crash", "hang", "memory") else b""  # rebuilt on demand
            results.append(Result(index, name, notes, outcome, detail, seconds, keep))
            if progress and len(results) % progress == 0:
                counts = Counter(r.outcome for r in results)
                print(f"  {len(results)}/{cases} cases, {time.perf_counter() - start:.0f} s: "
                      + ", ".join(f"{o} {counts.get(o, 0)}" for o in OUTCOMES),
                      file=sys.stderr, flush=True)
    finally:
        pool.close()
    results.sort(key=lambda r: r.index)
    return results


def rule_of(message: str) -> str:
    """An error message with its numbers and names taken out: the rule it states."""
    text = re.sub(r"'[^']*'", "'…'", message)
    text = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "N", text)
    return text[:150]


def summary(results: list[Result], seconds: float, jobs: int) -> str:
    counts = Counter(r.outcome for r in results)
    lines = [f"{len(results)} cases in {seconds:.0f} s ({jobs} worker{'s' if jobs > 1 else ''})",
             "", "| outcome | cases |", "|---|---|"]
    lines += [f"| {o} | {counts.get(o, 0)} |" for o in OUTCOMES]
    sites = Counter(r.detail.splitlines()[0] for r in results if r.outcome in ("crash", "hang", "memory"))
    lines += ["", f"distinct crash sites: {len(sites)}"]
    lines += [f"  {n:5d}  {site}" for site, n in sites.most_common()]
    if results:
        slow = max(results, key=lambda r: r.seconds)
        lines += ["", f"slowest case: #{slow.index} ({slow.model}; {'; '.join(slow.notes)}) "
                      f"{slow.seconds:.2f} s, {slow.outcome}"]
    rules = Counter(rule_of(r.detail) for r in results if r.outcome == "error")
    lines += ["", f"error rules: {len(rules)} distinct; the most frequent:"]
    lines += [f"  {n:5d}  {rule}" for rule, n in rules.most_common(12)]
    return "\n".join(lines)


def sanitize_sample(results: list[Result], n: int, seed: int, corpus: dict[str, bytes],
                    campaign_seed: int, jobs: int = 1, exhaustive: int = EXHAUSTIVE,
                    timeout: float = 300.0) -> list[tuple[Result, str, str]]:
    """Simulate n successes (spread over the corpus models) under ASan/UBSan against TFLite:
    (result, verdict, detail) with verdict bit-exact, MISMATCH, SANITIZER (a report or a
    failed build), TFLITE-REJECTS (mcunet accepts a model TFLite's Prepare refuses) or
    TFLITE-ABORTS (the reference killed its process). Each runs in a worker process."""
    by_model: dict[str, list[Result]] = {}
    for r in results:
        if r.outcome == "ok":
            by_model.setdefault(r.model, []).append(r)
    rng = random.Random(seed)
    for rs in by_model.values():
        rng.shuffle(rs)
    chosen: list[Result] = []
    while len(chosen) < n and any(by_model.values()):
        for name in sorted(by_model):
            if by_model[name] and len(chosen) < n:
                chosen.append(by_model[name].pop())
    index = {r.index: r for r in chosen}
    # No address-space limit: ASan reserves terabytes. Wall clock: the time is in children.
    pool = Pool(jobs, timeout, 0, exhaustive, clock="wall")
    report = []
    try:
        jobs_ = ((r.index, make_case(corpus, campaign_seed, r.index)[1], r.index % 2 == 1,
                  "sanitize") for r in chosen)
        for i, verdict, detail, _ in pool.run(jobs_):
            if verdict == "crash" and detail.startswith("worker died"):
                verdict = "TFLITE-ABORTS"
            report.append((index[i], verdict, detail))
    finally:
        pool.close()
    report.sort(key=lambda t: t[0].index)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first", type=int, default=0, help="index of the first case")
    ap.add_argument("--case", type=int, default=None, help="run only this case")
    ap.add_argument("--show", action="store_true", help="print each case's outcome")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="CPU seconds per case (and %d times as long on the wall clock)" % BLOCKED_FACTOR)
    ap.add_argument("--memory", type=int, default=4096, help="MiB of address space per worker")
    ap.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"),
                    help="where crashing inputs are saved")
    ap.add_argument("--no-mlperf", action="store_true", help="leave the MLPerf models out")
    ap.add_argument("--zoo", action="store_true", help="add scripts/model_zoo.py's cached models")
    ap.add_argument("--model", type=Path, action="append", default=[], help="add a model")
    ap.add_argument("--exhaustive", type=int, default=EXHAUSTIVE,
                    help="mcunet.memory.EXHAUSTIVE_BUFFERS in the workers (mcunet's own: 7)")
    ap.add_argument("--json", type=Path, default=None, help="write every case's outcome here")
    ap.add_argument("--sanitize", type=int, default=0,
                    help="simulate this many successes under ASan/UBSan against TFLite")
    args = ap.parse_args(argv)

    corpus = load_corpus(mlperf=not args.no_mlperf, zoo=args.zoo, extra=args.model)
    first, cases = (args.case, 1) if args.case is not None else (args.first, args.cases)
    print(f"corpus: {', '.join(f'{k} ({len(v):,} B)' for k, v in sorted(corpus.items()))}")
    start = time.perf_counter()
    results = campaign(corpus, cases, args.seed, args.jobs, args.timeout, args.memory, first,
                       args.exhaustive, progress=500)
    elapsed = time.perf_counter() - start
    bad = [r for r in results if r.outcome in ("crash", "hang", "memory")]
    for r in results:
        if args.show or r.outcome in ("crash", "hang", "memory"):
            print(f"#{r.index} {r.model} [{'; '.join(r.notes)}] {r.outcome} {r.seconds:.2f}s: "
                  f"{r.detail if args.show else r.detail.splitlines()[0]}")
    if bad:
        args.crashes.mkdir(parents=True, exist_ok=True)
        for r in bad:
            stem = args.crashes / f"seed{args.seed}-case{r.index}-{r.outcome}"
            stem.with_suffix(".tflite").write_bytes(r.data)
            stem.with_suffix(".txt").write_text(f"{r.model}: {'; '.join(r.notes)}\n{r.detail}\n")
        print(f"saved {len(bad)} inputs under {args.crashes}/")
    print(summary(results, elapsed, args.jobs))
    if args.json:
        import json
        args.json.write_text(json.dumps([{"case": r.index, "model": r.model, "mutations": r.notes,
                                          "outcome": r.outcome, "seconds": round(r.seconds, 3),
                                          "detail": r.detail.splitlines()[0] if r.detail else ""}
                                         for r in results], indent=1))
    multiline = [r for r in results if r.outcome == "error" and "\n" in r.detail]
    if multiline:
        print(f"{len(multiline)} error messages span several lines, e.g. #{multiline[0].index}")
    if args.sanitize:
        report = sanitize_sample(results, args.sanitize, args.seed, corpus, args.seed, args.jobs,
                                 args.exhaustive)
        verdicts = Counter(v for _, v, _ in report)
        print(f"\nsanitizer runs: {len(report)} ({', '.join(f'{k} {n}' for k, n in verdicts.items())})")
        for r, v, d in report:
            if v != "bit-exact":
                print(f"  #{r.index} {r.model} [{'; '.join(r.notes)}]: {v} {d}")
        bad += [r for r, v, _ in report if v != "bit-exact"]
    return 1 if bad or multiline else 0


if __name__ == "__main__":
    sys.exit(main())

"""On-device training (issue 14): `--train head`, `bias`, `last:N` and sparse schemes (a JSON
file: per layer its biases and the weights of its first ceil(ratio x C) output channels;
parse_sparse, sparse_training).

What a training build is (docs/training.md says the same for users):

- The **head** is the model's last FULLY_CONNECTED op. Its output (the logits) must end the
  model, alone or through RESHAPE/SQUEEZE and a final SOFTMAX (training then takes the
  logits before the softmax). `head` updates its weights and bias, `bias` only its bias.
- The **forward pass** is the int8 model as `NAME_invoke()` runs it. Every layer but the head
  runs on the kernel it runs on without --train; the head runs on `fully_connected_train_s8`
  (TFLite's reference arithmetic, as the portable fully connected kernel, on a plain
  row-major filter and an unfolded bias that training can rewrite in RAM). So invoke stays
  bit-exact with TFLite's reference kernels on the model with the head's current int8
  parameters, before and after training. The plan keeps the head's input (for `head`) and
  its logits live to the end of invoke: the training step reads them afterwards.
- The **loss** is softmax cross-entropy on the dequantised int8 logits
  z = s_y (q - zp_y); its gradient dL/dz = softmax(z) - onehot(label). The backward passes
  straight through the head's requantisation and int8 clamp (a straight-through estimator):
  dL/db = dL/dz, dL/dW = dL/dz (x) x with x the dequantised head input.
- **QAS** (Quantization-Aware Scaling, Lin et al., "On-Device Training Under 256KB
  Memory"): the parameters are updated in their quantised units (a filter value in units of
  s_w[u], a bias in units of s_x s_w[u]). The gradient in those units is s G (s the unit's
  scale, G the gradient of the real value); QAS multiplies it by s^-2, which gives G / s: so
  an update in quantised units moves the real parameter exactly as float SGD on it would, at
  the same learning rate, whatever the layer's scales. Per unit u the factors are float32
  constants computed at compile time: qas_filter[u] = s_x / s_w[u] (times the centred int8
  input) and qas_bias[u] = 1 / (s_x s_w[u]).
- The **update** is SGD with momentum (v = momentum v + g; delta = delta - lr v) on float32
  deltas in quantised units; the int8 filter and int32 bias in RAM are
  clamp(flash value + round(delta)) after every step (round: half away from zero, as
  trunc(v + 0.5) in float32; filter values clamped to [-127, 127], biases to int32).
- The **arithmetic** is float32 with every operation in a fixed order, so that C and NumPy
  agree bit for bit: IEEE single additions, multiplications and one division per logit,
  sums taken sequentially, no fused multiply-add (the library is compiled with
  -ffp-contract=off: its CMakeLists.txt sets it), no libm: exp and log are polynomials
  written out here and in the C (`train_exp`, `train_log`), their constants float32 values
  both sides share.

`TrainReference` below is that arithmetic in NumPy; tests/test_training.py holds the
generated C to it bit for bit over 100 steps and checks its gradients against TensorFlow's
autodiff.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .codegen import kernels
from .codegen.library import LibraryOptions
from .codegen.ops.add import add_arith
from .codegen.ops.mean import mean_multiplier
from .errors import McunetError
from .graph import Graph, Op
from .layers import FullyConnectedLayer
from .quant import activation_range, conv_multipliers, double_parts, round_scaled
from .shapes import window_padding
from .step import ConstArg, ConstArray, Step, TensorArg

SCHEMES = {"head": "the last FULLY_CONNECTED layer's weights and bias",
           "bias": "the biases of the last FULLY_CONNECTED layer and of the 1x1 CONV_2D the "
                   "backward reaches through the pooling and the DEPTHWISE_CONV_2D or CONV_2D "
                   "under it (where there are)"}
# What the backward passes through between the head and the layer below it (docs/training.md).
BACKWARD_OPS = ("RESHAPE, SQUEEZE, a global AVERAGE_POOL_2D or MEAN over the pixels, a "
                "residual ADD, a 1x1 stride-1 CONV_2D and the DEPTHWISE_CONV_2D (depth "
                "multiplier 1) or CONV_2D under it (fused NONE, RELU or RELU6)")
_MASKED = ("NONE", "RELU", "RELU6")
DEFAULT_LR = 0.01
DEFAULT_MOMENTUM = 0.9
# Views between the head and the model's output, and the one op that may end the model.
_VIEWS = ("RESHAPE", "SQUEEZE")

F = np.float32
# Limits of a delta before it is rounded (the int conversion stays defined).
FILTER_LIMIT = F(256.0)
BIAS_LIMIT = F(1 << 30)
# train_exp: 2^k e^r, k = floor(x log2(e) + 1/2), r = x - k ln2 (ln2 in a high part whose
# products with k are exact, and a low part), e^r by its Taylor polynomial to degree 7.
EXP_MIN = F(-87.0)
LOG2E = F(1.4426950408889634)
LN2_HI = F(0.693145751953125)
LN2_LO = F(0.6931471805599453 - 0.693145751953125)
EXP_POLY = tuple(F(1.0 / f) for f in (5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0))
# train_log: e ln2 + log(m) with m in [sqrt(1/2), sqrt(2)): log(m) = 2 s (1 + z/3 + ... + z^5/11),
# s = (m - 1) / (m + 1), z = s^2.
SQRT2 = F(1.4142135623730951)
LN2 = F(0.6931471805599453)
LOG_POLY = tuple(F(1.0 / d) for d in (11.0, 9.0, 7.0, 5.0, 3.0, 1.0))


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b of integer arrays, exactly, as int64: in float64 (BLAS) where every product and
    partial sum is an integer below 2^53 in magnitude (so float64 holds it exactly), else in
    int64 (NumPy's integer matmul, much slower)."""
    a = np.asarray(a)
    b = np.asarray(b)
    k = a.shape[-1]
    top = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * k
    if top < 1 << 53:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def in_order(terms: np.ndarray) -> np.ndarray:
    """The float32 sum over axis 0 of `terms`, term by term in order from +0.0 (as a C loop
    adds into a zeroed float accumulator). NumPy reduces over an outer axis term by term,
    rounding after each, with the rest of the array as its inner loop; where nothing is left
    for an inner loop (one value per term) it would pair the terms instead, so that case
    goes through np.add.accumulate, which is sequential by definition. tests/test_training.py
    checks both against the loop. The + 0.0 turns the one sum that can differ from the C's,
    -0.0 when every term is -0.0, into the C's +0.0."""
    terms = np.ascontiguousarray(terms, np.float32)
    if terms.size == terms.shape[0]:
        return np.add.accumulate(terms.reshape(-1), dtype=np.float32)[-1].reshape(
            terms.shape[1:]) + F(0.0)
    return np.add.reduce(terms, axis=0, dtype=np.float32) + F(0.0)


def c_float(value) -> str:
    """A float32 value as an exact C literal (hexadecimal, float suffix)."""
    return float(F(value)).hex() + "f"


@dataclass(frozen=True)
class LayerSpec:
    """One entry of a sparse scheme, as the JSON file gives it (resolved against the model by
    prepare): the layer (`op`: an op index, "head", or the name of the op's output tensor),
    the ratio of its output channels whose weights are updated (None: none) and whether its
    biases are."""
    op: int | str
    weights: float | None
    bias: bool
    where: str  # e.g. "layers[1]", for the messages


@dataclass(frozen=True)
class SparseScheme:
    """A sparse update scheme read from a JSON file (docs/training.md, "Sparse update")."""
    path: str
    layers: tuple[LayerSpec, ...]

    def __str__(self) -> str:
        return self.path


_SPARSE_KEYS = ("op", "weights", "bias")


def _sparse_error(path: str, where: str, what: str) -> McunetError:
    return McunetError(f"--train {path}: {where}: {what} (docs/training.md, sparse update)"
                       if where else f"--train {path}: {what} (docs/training.md, sparse update)")


def parse_sparse(path: str, data) -> SparseScheme:
    """The SparseScheme of a parsed JSON document, or McunetError naming the bad field."""
    if not isinstance(data, dict):
        raise _sparse_error(path, "", 'the file must hold one JSON object, {"layers": [...]}')
    extra = sorted(set(data) - {"layers"})
    if extra:
        raise _sparse_error(path, extra[0], 'unknown field (a scheme has "layers" only)')
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _sparse_error(path, "layers", "missing or not a non-empty list of layers")
    out = []
    for k, entry in enumerate(layers):
        where = f"layers[{k}]"
        if not isinstance(entry, dict):
            raise _sparse_error(path, where, 'not an object like {"op": 8, "weights": 0.25, '
                                '"bias": true}')
        extra = sorted(set(entry) - set(_SPARSE_KEYS))
        if extra:
            raise _sparse_error(path, f"{where}.{extra[0]}",
                                "unknown field (a layer has op, weights and bias)")
        if "op" not in entry:
            raise _sparse_error(path, f"{where}.op", "missing (an op index, \"head\", or the "
                                "name of the op's output tensor)")
        op = entry["op"]
        if isinstance(op, bool) or not isinstance(op, (int, str)):
            raise _sparse_error(path, f"{where}.op", f"{json.dumps(op)} is not an op index, "
                                "\"head\" or a tensor name")
        weights = entry.get("weights")
        if weights is not None:
            if isinstance(weights, bool) or not isinstance(weights, (int, float)) or \
                    not 0 < weights <= 1:
                raise _sparse_error(path, f"{where}.weights", f"{json.dumps(weights)} is not a "
                                    "ratio of output channels in (0, 1]")
        bias = entry.get("bias", False)
        if not isinstance(bias, bool):
            raise _sparse_error(path, f"{where}.bias", f"{json.dumps(bias)} is not true or false")
        if weights is None and not bias:
            raise _sparse_error(path, where, "updates nothing (give weights, a ratio in (0, 1], "
                                "and/or \"bias\": true)")
        out.append(LayerSpec(op=op, weights=None if weights is None else float(weights),
                             bias=bias, where=where))
    return SparseScheme(path=path, layers=tuple(out))


def read_sparse(path: str) -> SparseScheme:
    """The SparseScheme in a JSON file, or McunetError (missing, a directory, unreadable,
    malformed, or a bad field)."""
    p = Path(path)
    if p.is_dir():
        raise _sparse_error(path, "", "is a directory, not a JSON scheme file")
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise _sparse_error(path, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _sparse_error(path, "", f"cannot be read ({exc.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _sparse_error(path, "", f"not valid JSON (line {exc.lineno} column {exc.colno}: "
                            f"{exc.msg})") from None
    return parse_sparse(path, data)


def parse_scheme(spec) -> str | SparseScheme:
    """The --train SPEC: head, bias, last:N (N >= 1), or a sparse scheme (a .json file or a
    directory named as one, an already parsed dict, or a SparseScheme); McunetError naming
    what is wrong."""
    if isinstance(spec, SparseScheme):
        return spec
    if isinstance(spec, dict):
        return parse_sparse("<scheme>", spec)
    spec = str(spec)
    if spec in SCHEMES:
        return spec
    if spec.startswith("last:"):
        n = spec[5:]
        if not n.isdigit() or int(n) < 1:
            raise McunetError(f"--train {spec}: N in last:N must be a whole number >= 1")
        return f"last:{int(n)}"
    if spec.lower().endswith(".json") or Path(spec).is_dir():
        return read_sparse(spec)
    raise McunetError(f"--train {spec!r} is not a training scheme: give head, bias, last:N or "
                      "a sparse scheme's .json file")


def describe(scheme) -> str:
    if isinstance(scheme, SparseScheme):
        return f"the sparse update of {scheme.path}"
    if scheme in SCHEMES:
        return SCHEMES[scheme]
    n = int(scheme[5:])
    return ("the last trainable layer's weights and bias" if n == 1 else
            f"the weights and biases of the last {n} trainable layers")


@dataclass(frozen=True)
class Head:
    """The last FULLY_CONNECTED op and the numbers training needs of it."""
    op_index: int
    x: int  # its input tensor (int8, [1][depth])
    y: int  # its output: the logits (int8, [1][units])
    units: int
    depth: int
    per_channel: bool
    x_scale: float
    x_zp: int
    w_scales: np.ndarray  # float32 [units] (the per-tensor scale repeated)
    w_zp: int
    y_scale: float
    y_zp: int
    act_min: int
    act_max: int
    filter: np.ndarray  # int8 [units][depth]
    bias: np.ndarray  # int32 [units] (zeros without a bias)
    mantissa: np.ndarray  # uint64, one or one per unit: the double rescale (quant.double_parts)
    shift: np.ndarray  # int32, alike

    @property
    def filter_offset(self) -> int:
        return 0 if self.per_channel else -self.w_zp  # TFLite's per-channel path ignores it

    def qas_filter(self) -> np.ndarray:
        """Per unit, float32(s_x / s_w[u]): the QAS-scaled filter gradient is dL/dz[u] times
        this times (x - zp_x)."""
        return np.array([self.x_scale / float(s) for s in self.w_scales], dtype=np.float32)

    def qas_bias(self) -> np.ndarray:
        """Per unit, float32(1 / (s_x s_w[u])): the QAS-scaled bias gradient is dL/dz[u]
        times this."""
        return np.array([1.0 / (self.x_scale * float(s)) for s in self.w_scales],
                        dtype=np.float32)


def find_head(graph: Graph) -> Head:
    """The head a training build updates, or McunetError saying why the model has none."""
    fcs = [op for op in graph.ops if op.kind == "FULLY_CONNECTED"]
    if not fcs:
        raise McunetError("--train needs a model whose logits come from a FULLY_CONNECTED "
                          "layer (optionally followed by SOFTMAX); this model has none")
    op = fcs[-1]
    consumers = graph.consumers()
    t, path = op.outputs[0], []
    while t not in graph.outputs:
        users = consumers.get(t, [])
        if len(users) != 1 or users[0].kind not in _VIEWS + ("SOFTMAX",) or \
                (path and path[-1] == "SOFTMAX"):
            raise McunetError(f"--train: the last FULLY_CONNECTED (op {op.index}) does not end "
                              "the model (only RESHAPE, SQUEEZE and one SOFTMAX may follow it, "
                              "up to the model's only output)")
        path.append(users[0].kind)
        t = users[0].outputs[0]
    if len(graph.outputs) != 1:
        raise McunetError("--train supports models with one output (the classifier's)")
    if len(graph.inputs) != 1 or graph.t(graph.inputs[0]).dtype != "int8":
        raise McunetError("--train supports models with one int8 input")
    x, w, y = (graph.t(op.inputs[0]), graph.t(op.inputs[1]), graph.t(op.outputs[0]))
    activation = op.attrs.get("activation", "NONE")
    if activation != "NONE":
        raise McunetError(f"--train: the head (op {op.index}) has a fused {activation}; heads "
                          "with a fused activation are not supported yet")
    units, depth = w.shape
    if x.size != depth:
        raise McunetError(f"--train: the head (op {op.index}) has {x.size // depth} rows; "
                          "training supports one row (batch size 1)")
    bias = graph.t(op.inputs[2]).data.astype(np.int32).reshape(-1) \
        if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(units, np.int32)
    scales = w.quant.scale.astype(np.float32).reshape(-1)
    per_channel = w.quant.per_axis
    ratios = [float(x.quant.s) * float(s) / float(y.quant.s) for s in scales]
    parts = [double_parts(r) for r in ratios]
    act_min, act_max = activation_range("NONE", y.quant.s, y.quant.zp)
    return Head(op_index=op.index, x=op.inputs[0], y=op.outputs[0], units=units, depth=depth,
                per_channel=per_channel, x_scale=float(x.quant.s), x_zp=x.quant.zp,
                w_scales=scales if per_channel else np.repeat(scales[:1], units),
                w_zp=w.quant.zp, y_scale=float(y.quant.s), y_zp=y.quant.zp,
                act_min=act_min, act_max=act_max, filter=w.data.astype(np.int8).reshape(units, depth),
                bias=bias, mantissa=np.array([m for m, _ in parts], dtype=np.uint64),
                shift=np.array([e for _, e in parts], dtype=np.int32))


class _TrainedConvLayer:
    """What the trained conv-like layers (ConvTail, DepthwiseTail) share: their per-channel
    QAS factors (from x_scale and w_scales) and the names of their state (from op_index)."""

    def qas_filter(self) -> np.ndarray:
        return np.array([self.x_scale / float(s) for s in self.w_scales], dtype=np.float32)

    def qas_bias(self) -> np.ndarray:
        return np.array([1.0 / (self.x_scale * float(s)) for s in self.w_scales],
                        dtype=np.float32)

    @property
    def prefix(self) -> str:
        return f"mcunet_train_op{self.op_index}_"

    @property
    def key(self) -> str:
        return f"op{self.op_index}_"

    def mask_condition(self) -> str:
        """The C condition on a saved int8 output y under which its activation passes the
        gradient (strictly inside the clamp the fused activation applies; "1" for NONE)."""
        cond = []
        if self.mask_lo is not None:
            cond.append(f"y > {self.mask_lo}")
        if self.mask_hi is not None:
            cond.append(f"y < {self.mask_hi}")
        return " && ".join(cond) or "1"


@dataclass(frozen=True)
class ConvTail(_TrainedConvLayer):
    """The 1x1 CONV_2D below the head, reached backward through RESHAPE/SQUEEZE and a global
    AVERAGE_POOL_2D: its numbers, the pool's, and the symbols of its flash constants."""
    op_index: int
    x: int  # its input (int8, pixels x depth), kept for the filter gradient
    y: int  # its output (int8, pixels x units), kept for the activation's mask
    pixels: int
    units: int
    depth: int
    x_scale: float
    x_zp: int
    y_zp: int
    w_scales: np.ndarray  # float32 [units]
    filter: np.ndarray  # int8 [units][depth]
    bias: np.ndarray  # int32 [units]
    multiplier: np.ndarray  # int32 [units] (Q31, as TFLite's reference conv)
    shift: np.ndarray
    act_min: int
    act_max: int
    mask_lo: int | None  # the gradient passes where lo < y (and y < hi): the fused activation
    mask_hi: int | None
    pool_op: int
    pool_min: int
    pool_max: int
    # A MEAN over the pixels instead of AVERAGE_POOL_2D: TFLite's QuantizedMeanOrSum integers
    # (sum + mean_offset, requantised with 1/n folded in, + mean_zp); None for the pool.
    mean: tuple[int, int, int, int] | None = None  # (sum offset, multiplier, shift, output zp)
    # A residual ADD between the conv and the pool (an inverted-residual block's end): y is
    # then the ADD's output (kept: its activation's mask), the conv's own output is not (its
    # activation is NONE: straight through, as the ADD's requantisation); `residual` is the
    # ADD's other input, which the reference's forward needs.
    add: object | None = None  # the ADD's AddArith (codegen.ops.add.add_arith)
    add_op: int | None = None
    residual: int | None = None
    residual_first: bool = False



def _residual_add(graph: Graph, op: Op, producers, consumers):
    """((the ADD, which input is the residual, its AddArith), "") where the ADD's output is
    the sum of a 1x1 conv's (read by the ADD only) and another tensor of its shape, else
    (None, why)."""
    if len(op.inputs) != 2 or any(graph.t(i).is_const or graph.t(i).shape !=
                                  graph.t(op.outputs[0]).shape for i in op.inputs):
        return None, f"{_op_name(op)}, which is not a residual ADD of two tensors of one shape"
    for k in (1, 0):  # the conv is usually the second operand (Keras's Add([x, y]))
        conv = producers.get(op.inputs[k])
        if conv is not None and conv.kind == "CONV_2D" and \
                len(consumers.get(op.inputs[k], [])) == 1 and op.inputs[k] not in graph.outputs \
                and op.inputs[1 - k] != op.inputs[k]:
            a, b = graph.t(op.inputs[0]), graph.t(op.inputs[1])
            arith = add_arith(a, b, graph.t(op.outputs[0]), op.attrs.get("activation", "NONE"))
            return (op, 1 - k, arith), ""
    return None, (f"{_op_name(op)}, neither of whose inputs is a CONV_2D read by it alone "
                  "(the backward passes through a residual ADD to such a conv)")


def _op_name(op: Op | None) -> str:
    return "the model's input" if op is None else f"{op.kind} (op {op.index})"


def find_tail(graph: Graph, head: Head) -> tuple[ConvTail | None, str]:
    """The 1x1 conv the backward from the head reaches (or None), and what stops the backward
    below it (or below the head): an op named with its index and why."""
    producers, consumers = graph.producers(), graph.consumers()

    def single(t: int) -> bool:
        return len(consumers.get(t, [])) == 1 and t not in graph.outputs

    t = head.x
    op = producers.get(t)
    while op is not None and op.kind in _VIEWS and single(t):
        t = op.inputs[0]
        op = producers.get(t)
    if op is None:
        return None, "the model's input"
    if not single(t):
        return None, f"{_op_name(op)}, whose output has other consumers"
    pin, pout = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    mean = None
    if op.kind == "MEAN":
        axes = graph.t(op.inputs[1]).data.reshape(-1).tolist() if op.inputs[1] >= 0 and \
            graph.t(op.inputs[1]).is_const else []
        if len(pin.shape) != 4 or sorted(a % 4 for a in axes) != [1, 2] or \
                pout.size != pin.shape[3]:
            return None, f"{_op_name(op)}, which is not a mean over the pixels (only that is supported)"
        n = pin.shape[1] * pin.shape[2]
        multiplier, shift = mean_multiplier(pin.quant.s, pout.quant.s, n)
        mean = (-pin.quant.zp * n, multiplier, shift, pout.quant.zp)
    elif op.kind != "AVERAGE_POOL_2D":
        return None, f"{_op_name(op)}, which is not supported in the backward yet"
    elif len(pin.shape) != 4 or tuple(pout.shape[1:3]) != (1, 1) or \
            (op.attrs["filter_h"], op.attrs["filter_w"]) != tuple(pin.shape[1:3]) or \
            op.attrs.get("activation", "NONE") != "NONE":
        return None, f"{_op_name(op)}, which is not a global average (only that is supported)"
    pool = op
    pool_min, pool_max = activation_range("NONE", pout.quant.s, pout.quant.zp)
    t = op.inputs[0]
    op = producers.get(t)
    if op is None:
        return None, "the model's input"
    if not single(t):
        return None, f"{_op_name(op)}, whose output has other consumers"
    add = None
    if op.kind == "ADD":
        add, why = _residual_add(graph, op, producers, consumers)
        if add is None:
            return None, why
        t = op.inputs[1 - add[1]]
        op = producers[t]
    w = graph.t(op.inputs[1]) if op.kind == "CONV_2D" else None
    if op.kind != "CONV_2D" or w.shape[1:3] != (1, 1) or \
            (op.attrs["stride_h"], op.attrs["stride_w"]) != (1, 1):
        return None, f"{_op_name(op)}, which is not supported in the backward yet"
    activation = op.attrs.get("activation", "NONE")
    if activation not in _MASKED:
        return None, f"{_op_name(op)}, whose fused {activation} is not supported"
    x, y = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    y_out, mask_act = op.outputs[0], activation
    if add is not None:
        add_op, _, arith = add
        if activation != "NONE":
            return None, (f"{_op_name(op)} under the residual ADD (op {add_op.index}), whose "
                          f"fused {activation} is not supported (its output is not kept)")
        y_out, mask_act = add_op.outputs[0], add_op.attrs.get("activation", "NONE")
        if mask_act not in _MASKED:
            return None, f"{_op_name(add_op)}, whose fused {mask_act} is not supported"
    units, depth = w.shape[0], w.shape[3]
    pixels = x.size // depth
    if pixels * 255 >= 1 << 24:
        return None, f"{_op_name(op)}, whose {pixels} pixels are too many (sums exact in float32)"
    scales = w.quant.scale.astype(np.float32).reshape(-1)
    scales = scales if scales.size == units else np.repeat(scales[:1], units)
    mult, shift = conv_multipliers(x.quant.s, w.quant.scale, y.quant.s, units)
    shift = np.where(mult == 0, -2, shift).astype(np.int32)  # as the lowering (same integers)
    act_min, act_max = activation_range(activation, y.quant.s, y.quant.zp)
    bias = graph.t(op.inputs[2]).data.astype(np.int32).reshape(-1) \
        if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(units, np.int32)
    mask_min, mask_max = activation_range(mask_act, graph.t(y_out).quant.s,
                                          graph.t(y_out).quant.zp)
    conv = ConvTail(op_index=op.index, x=op.inputs[0], y=y_out, pixels=pixels,
                    units=units, depth=depth, x_scale=float(x.quant.s), x_zp=x.quant.zp,
                    y_zp=y.quant.zp, w_scales=scales,
                    filter=w.data.astype(np.int8).reshape(units, depth), bias=bias,
                    multiplier=mult.astype(np.int32), shift=shift, act_min=act_min,
                    act_max=act_max, mask_lo=mask_min if mask_act != "NONE" else None,
                    mask_hi=mask_max if mask_act == "RELU6" else None, pool_op=pool.index,
                    pool_min=pool_min, pool_max=pool_max, mean=mean,
                    **({} if add is None else
                       {"add": add[2], "add_op": add[0].index,
                        "residual": add[0].inputs[add[1]], "residual_first": add[1] == 0}))
    if np.any(w.quant.zero_point != 0):
        return None, f"{_op_name(op)}, whose filter is not symmetric"
    below = producers.get(op.inputs[0])
    return conv, (f"{_op_name(below)}, which the backward does not pass through yet (below "
                  f"CONV_2D op {op.index} it passes through a DEPTHWISE_CONV_2D or a CONV_2D "
                  "only)")


@dataclass(frozen=True)
class DepthwiseTail(_TrainedConvLayer):
    """The DEPTHWISE_CONV_2D (depth multiplier 1) or CONV_2D (any kernel, kind "CONV_2D") under
    the trained 1x1 conv, no dilation: the backward reaches it through the conv's input
    gradient (last:3, bias). `channels` are its output channels (the 1x1 conv's depth)."""
    op_index: int
    x: int  # its input (int8, ih x iw x channels), kept for the filter gradient
    y: int  # its output = the conv's input, kept for the activation's mask
    ih: int
    iw: int
    oh: int
    ow: int
    channels: int
    kh: int
    kw: int
    sh: int
    sw: int
    pad_top: int
    pad_left: int
    x_scale: float
    x_zp: int
    y_zp: int
    w_scales: np.ndarray  # float32 [channels]
    filter: np.ndarray  # int8 [kh * kw][channels] (TFLite's [1][kh][kw][channels])
    bias: np.ndarray  # int32 [channels]
    multiplier: np.ndarray  # int32 [channels] (Q31)
    shift: np.ndarray
    act_min: int
    act_max: int
    mask_lo: int | None
    mask_hi: int | None
    kind: str = "DEPTHWISE_CONV_2D"
    in_channels: int = 0  # a CONV_2D's input channels (its filter: [channels][taps * these])

    @property
    def is_conv(self) -> bool:
        return self.kind == "CONV_2D"

    @property
    def weights_per_channel(self) -> int:
        """Filter values per output channel: kh kw (depthwise), kh kw in_channels (conv)."""
        return self.taps * (self.in_channels if self.is_conv else 1)

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def pixels(self) -> int:
        return self.oh * self.ow

    def tap_index(self) -> np.ndarray:
        """[taps][output pixels]: the input pixel each tap of each output pixel reads, or
        ih * iw where it falls in the padding (outside the input)."""
        out = np.full((self.taps, self.pixels), self.ih * self.iw, np.int64)
        for ky in range(self.kh):
            for kx in range(self.kw):
                for oy in range(self.oh):
                    iy = oy * self.sh - self.pad_top + ky
                    for ox in range(self.ow):
                        ix = ox * self.sw - self.pad_left + kx
                        if 0 <= iy < self.ih and 0 <= ix < self.iw:
                            out[ky * self.kw + kx, oy * self.ow + ox] = iy * self.iw + ix
        return out



def find_depthwise(graph: Graph, conv: ConvTail) -> tuple[DepthwiseTail | None, str]:
    """The DEPTHWISE_CONV_2D or CONV_2D whose output is the trained conv's input (or None), and
    what stops the backward there or below it."""
    producers, consumers = graph.producers(), graph.consumers()
    t = conv.x
    op = producers.get(t)
    if op is None:
        return None, "the model's input"
    if len(consumers.get(t, [])) != 1 or t in graph.outputs:
        return None, f"{_op_name(op)}, whose output has other consumers"
    if op.kind not in ("DEPTHWISE_CONV_2D", "CONV_2D"):
        return None, (f"{_op_name(op)}, which the backward does not pass through yet (below "
                      f"CONV_2D op {conv.op_index} it passes through a DEPTHWISE_CONV_2D or a "
                      "CONV_2D only)")
    x, w, y = graph.t(op.inputs[0]), graph.t(op.inputs[1]), graph.t(op.outputs[0])
    if op.kind == "CONV_2D":
        channels, kh, kw, in_channels = w.shape
        if len(x.shape) != 4 or x.shape[3] != in_channels:
            return None, f"{_op_name(op)}, a grouped convolution (not supported)"
    else:
        _, kh, kw, channels = w.shape
        in_channels = 0
        if len(x.shape) != 4 or x.shape[3] != channels:
            return None, f"{_op_name(op)}, whose depth multiplier is not 1 (only 1 is supported)"
    if (op.attrs.get("dilation_h", 1), op.attrs.get("dilation_w", 1)) != (1, 1):
        return None, f"{_op_name(op)}, which is dilated (not supported)"
    activation = op.attrs.get("activation", "NONE")
    if activation not in _MASKED:
        return None, f"{_op_name(op)}, whose fused {activation} is not supported"
    if np.any(w.quant.zero_point != 0):
        return None, f"{_op_name(op)}, whose filter is not symmetric"
    _, ih, iw, _ = x.shape
    _, oh, ow, _ = y.shape
    pad_top, pad_left = window_padding(op.attrs, ih, iw, kh, kw, oh, ow)
    scales = w.quant.scale.astype(np.float32).reshape(-1)
    scales = scales if scales.size == channels else np.repeat(scales[:1], channels)
    mult, shift = conv_multipliers(x.quant.s, w.quant.scale, y.quant.s, channels)
    shift = np.where(mult == 0, -2, shift).astype(np.int32)
    act_min, act_max = activation_range(activation, y.quant.s, y.quant.zp)
    bias = graph.t(op.inputs[2]).data.astype(np.int32).reshape(-1) \
        if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(channels, np.int32)
    dw = DepthwiseTail(op_index=op.index, x=op.inputs[0], y=op.outputs[0], ih=ih, iw=iw,
                       oh=oh, ow=ow, channels=channels, kh=kh, kw=kw,
                       sh=op.attrs["stride_h"], sw=op.attrs["stride_w"], pad_top=pad_top,
                       pad_left=pad_left, x_scale=float(x.quant.s), x_zp=x.quant.zp,
                       y_zp=y.quant.zp, w_scales=scales,
                       filter=w.data.astype(np.int8).reshape(channels, kh * kw * in_channels)
                       if op.kind == "CONV_2D" else
                       w.data.astype(np.int8).reshape(kh * kw, channels), bias=bias,
                       multiplier=mult.astype(np.int32), shift=shift, act_min=act_min,
                       act_max=act_max, mask_lo=act_min if activation != "NONE" else None,
                       mask_hi=act_max if activation == "RELU6" else None, kind=op.kind,
                       in_channels=in_channels)
    below = producers.get(op.inputs[0])
    return dw, (f"{_op_name(below)}, which the backward does not pass through yet (the "
                f"input gradient of {op.kind} op {op.index} is not derived)")


@dataclass(frozen=True)
class Update:
    """What a training build updates of one trainable layer: all its biases (bias) and the
    filter values of its first `channels` output channels (0: none; the layer's channel count:
    the whole filter). A layer with neither is frozen: the backward passes through it (its
    input gradient, from its flash filter) to a trained layer below."""
    bias: bool
    channels: int

    @property
    def trains(self) -> bool:
        return self.bias or self.channels > 0


@dataclass(frozen=True)
class Training:
    """A training build: the scheme, its head (and the 1x1 conv below it, and the depthwise
    below that, when the backward goes there), what each of them updates, and what it adds to
    the library. head_update/conv_update/dw_update default to what the named scheme updates
    (bias: the biases; head, last:N: every bias and weight); a sparse scheme sets them."""
    scheme: str | SparseScheme
    head: Head
    conv: ConvTail | None = None
    dw: DepthwiseTail | None = None  # the depthwise under the conv (last:3, bias)
    lr: float = DEFAULT_LR
    momentum: float = DEFAULT_MOMENTUM
    head_update: Update | None = None
    conv_update: Update | None = None
    dw_update: Update | None = None

    def __post_init__(self):
        object.__setattr__(self, "_symbols", {})
        full = self.scheme != "bias"
        defaults = {"head_update": self.head.units,
                    "conv_update": self.conv.units if self.conv is not None else None,
                    "dw_update": self.dw.channels if self.dw is not None else None}
        for name, channels in defaults.items():
            if getattr(self, name) is None and channels is not None:
                object.__setattr__(self, name, Update(True, channels if full else 0))
        if self.conv is None:
            object.__setattr__(self, "conv_update", None)
        if self.dw is None:
            object.__setattr__(self, "dw_update", None)

    @property
    def sparse(self) -> bool:
        return isinstance(self.scheme, SparseScheme)

    @property
    def head_channels(self) -> int:
        """The head's units whose weights are trained (its first ones)."""
        return self.head_update.channels

    @property
    def conv_channels(self) -> int:
        return self.conv_update.channels if self.conv is not None else 0

    @property
    def dw_channels(self) -> int:
        return self.dw_update.channels if self.dw is not None else 0

    @property
    def updates_filter(self) -> bool:
        """The head's filter is trained (all or its first head_channels units)."""
        return self.head_channels > 0

    @property
    def conv_filter(self) -> bool:
        """The conv's filter is trained (last:2 and more, or a sparse scheme)."""
        return self.conv_channels > 0

    @property
    def dw_filter(self) -> bool:
        """The depthwise's filter is trained (last:3, or a sparse scheme)."""
        return self.dw_channels > 0

    @property
    def entry(self) -> int:
        """The tensor the trained tail starts from: the reference computes forward from it (it
        does not change with training), as the forward of the layers below it is frozen."""
        if self.dw is not None:
            return self.dw.x
        return self.conv.x if self.conv is not None else self.head.x

    @property
    def entries(self) -> tuple[int, ...]:
        """The tensors the reference's forward starts from: the entry, and the residual of an
        ADD between the trained conv and the pool. TrainReference takes their int8 values
        flattened and concatenated in this order (what the frozen forward gives)."""
        if self.conv is not None and self.conv.residual is not None:
            return (self.entry, self.conv.residual)
        return (self.entry,)

    @property
    def keep(self) -> tuple[int, ...]:
        """The tensors the training step reads after the forward pass (live to its end)."""
        keep = [self.head.y] + ([self.head.x] if self.updates_filter else [])
        if self.conv is not None:
            keep += [self.conv.y] + ([self.conv.x] if self.conv_filter else [])
        if self.dw is not None:
            keep += [self.dw.y] + ([self.dw.x] if self.dw_filter else [])
        return tuple(dict.fromkeys(keep))

    @property
    def what(self) -> str:
        """What the build updates, in words (a sparse scheme's layers one by one)."""
        if not self.sparse:
            return describe(self.scheme)
        parts = []
        for _, op, u, n in self.layers():
            if u.trains:
                parts.append(f"op {op} " + " and ".join(
                    ([f"weights of {u.channels}/{n} channels"] if u.channels else []) +
                    (["bias"] if u.bias else [])))
        return f"sparsely: {'; '.join(parts)}"

    def layers(self) -> list[tuple[str, int, Update, int]]:
        """(state key prefix, op index, update, channels) of the head, conv and depthwise in
        the build, from the head down."""
        out = [("", self.head.op_index, self.head_update, self.head.units)]
        if self.conv is not None:
            out.append((self.conv.key, self.conv.op_index, self.conv_update, self.conv.units))
        if self.dw is not None:
            out.append((self.dw.key, self.dw.op_index, self.dw_update, self.dw.channels))
        return out

    def state_layout(self) -> list[tuple[str, str, str, tuple[int, ...]]]:
        """(key, C symbol, C type, shape) of the state the harnesses write after training, in
        their order. A trained filter holds its trained channels only: [channels][depth] for
        the head and the conv, [taps][channels] for the depthwise."""
        def arrays(key: str, prefix: str, bias: tuple[int, ...] | None,
                   filt: tuple[int, ...] | None):
            """A trained layer's bias (and filter) with their float32 delta and velocity."""
            names = []
            if bias is not None:
                names += [("bias", "int32_t", bias), ("bias_delta", "float", bias),
                          ("bias_velocity", "float", bias)]
            if filt is not None:
                names += [("filter", "int8_t", filt), ("filter_delta", "float", filt),
                          ("filter_velocity", "float", filt)]
            return [(key + n, prefix + n, ct, shape) for n, ct, shape in names]

        h, c, d = self.head, self.conv, self.dw
        out = arrays("", "mcunet_train_", (h.units,) if self.head_update.bias else None,
                     (self.head_channels, h.depth) if self.updates_filter else None)
        if c is not None:
            out += arrays(c.key, c.prefix, (c.units,) if self.conv_update.bias else None,
                          (self.conv_channels, c.depth) if self.conv_filter else None)
        if d is not None:
            out += arrays(d.key, d.prefix, (d.channels,) if self.dw_update.bias else None,
                          ((self.dw_channels, d.weights_per_channel) if d.is_conv else
                           (d.taps, self.dw_channels)) if self.dw_filter else None)
        return out

    def template_state(self) -> list[tuple[str, str, int]]:
        """(symbol, C type, elements) of the state, as the harness templates write it."""
        return [(sym, ct, int(np.prod(shape))) for _, sym, ct, shape in self.state_layout()]

    def static_arrays(self) -> list[tuple[str, str, int]]:
        """(symbol, C type, elements) of the static RAM the training code defines, besides
        four scalars (learning rate, momentum, last loss: float; initialised: int)."""
        arrays = [(sym, ct, int(np.prod(shape))) for _, sym, ct, shape in self.state_layout()]
        arrays.append(("train_dz", "float", self.head.units))
        if self.conv is not None:
            arrays.append(("train_dx", "float", self.head.depth))
        if self.dw is not None:
            arrays.append(("train_db", "float", self.conv.units))
        return arrays

    @property
    def static_bytes(self) -> int:
        size = {"int8_t": 1, "int32_t": 4, "float": 4}
        return sum(size[c] * n for _, c, n in self.static_arrays()) + 4 * 4

    @property
    def parameters(self) -> int:
        h, c, d = self.head, self.conv, self.dw
        n = self.head_channels * h.depth + (h.units if self.head_update.bias else 0)
        if c is not None:
            n += self.conv_channels * c.depth + (c.units if self.conv_update.bias else 0)
        if d is not None:
            n += self.dw_channels * d.weights_per_channel + \
                (d.channels if self.dw_update.bias else 0)
        return n

    def full_parameters(self, state: dict[str, np.ndarray]) -> dict[int, tuple[np.ndarray,
                                                                               np.ndarray]]:
        """{op index: (filter, bias)} of every layer in the build with the trained values of a
        state (state_layout's keys: a run's or TrainReference.state()) written over the
        model's: the parameters to write into the .tflite to keep what was learnt."""
        out = {}
        for key, op, update, _ in self.layers():
            layer = self.head if key == "" else self.conv if key == self.conv.key else self.dw
            filt, bias = layer.filter.copy(), layer.bias.copy()
            if update.bias:
                bias = np.asarray(state[key + "bias"]).astype(np.int32).reshape(bias.shape)
            k = update.channels
            if k:
                trained = np.asarray(state[key + "filter"]).astype(np.int8)
                if layer is self.dw and not self.dw.is_conv:
                    filt[:, :k] = trained.reshape(filt.shape[0], k)
                else:
                    filt[:k] = trained.reshape(k, filt.shape[1])
            out[op] = (filt, bias)
        return out

    @property
    def gradient_bytes(self) -> int:
        """The float32 gradient buffers of the backward (dL/dz, dL/dx of the head's input
        when the conv is trained, and the conv's per-channel output gradient times its scale
        when the depthwise is: the conv's input gradient is streamed channel by channel, one
        value at a time, so no [pixels][channels] buffer)."""
        return 4 * (self.head.units + (self.head.depth if self.conv is not None else 0) +
                    (self.conv.units if self.dw is not None else 0))

    def rewrite(self, graph: Graph, steps: list[Step], consts: list[ConstArray]
                ) -> tuple[list[Step], list[ConstArray]]:
        """The head's step on the trainable kernel with its parameters where training keeps
        them, and the flash contents: the original filter and bias (what reset restores),
        the rescale, the QAS factors; the head's own packed constants go. The trained conv
        runs on the portable conv kernel (the trainable family) reading its filter and bias
        from RAM; its flash filter and bias stay (reset restores them). A layer whose first
        channels only are trained reads those channels' filter from RAM and the others' from
        the flash filter (its layer's `trained`, the kernel's filter_frozen)."""
        h = self.head
        at = [i for i, s in enumerate(steps) if s.op.index == h.op_index]
        assert len(at) == 1, "one step per op before any patch stage"
        old = steps[at[0]]
        own = [ConstArray("mcunet_train_filter0", "int8_t", h.filter.reshape(-1)),
               ConstArray("mcunet_train_bias0", "int32_t", h.bias),
               ConstArray("mcunet_train_mantissa", "uint64_t", h.mantissa),
               ConstArray("mcunet_train_shift", "int32_t", h.shift)]
        if self.head_update.bias:
            own.append(ConstArray("mcunet_train_qas_bias", "float", h.qas_bias()))
        if self.updates_filter:
            own.append(ConstArray("mcunet_train_qas_filter", "float", h.qas_filter()))
        partial = 0 < self.head_channels < h.units
        layer = FullyConnectedLayer(batches=1, units=h.units, depth=h.depth,
                                    per_channel=h.per_channel, filter_offset=h.filter_offset,
                                    input_offset=-h.x_zp, output_offset=h.y_zp,
                                    act_min=h.act_min, act_max=h.act_max,
                                    trained=self.head_channels if partial else 0)
        args = (TensorArg(h.x, "input"),
                ConstArg("mcunet_train_filter" if self.updates_filter else "mcunet_train_filter0",
                         "filter", "int8_t"),
                *([ConstArg("mcunet_train_filter0", "filter_frozen", "int8_t")] if partial
                  else []),
                ConstArg("mcunet_train_bias" if self.head_update.bias else "mcunet_train_bias0",
                         "bias", "int32_t"),
                ConstArg("mcunet_train_mantissa", "mantissa", "uint64_t"),
                ConstArg("mcunet_train_shift", "shift", "int32_t"),
                TensorArg(h.y, "output", output=True))
        new = replace(old, kernel=kernels.FULLY_CONNECTED_TRAIN_S8, layer=layer, args=args)
        steps = steps[:at[0]] + [new] + steps[at[0] + 1:]

        def trained_step(step: Step, prefix: str, bias_trained: bool, filter_trained: bool,
                         channels: int, units: int, kernel) -> Step:
            """The step on its trainable kernel: the layer's own bias (in RAM when trained, else
            bias0) and rescale, its filter in RAM when trained; where only `channels` of the
            `units` output channels are, the flash filter follows as filter_frozen."""
            rename = {"bias": prefix + ("bias" if bias_trained else "bias0"),
                      "multiplier": prefix + "multiplier", "shift": prefix + "shift"}
            if filter_trained:
                rename["filter"] = prefix + "filter"
            partial = filter_trained and channels < units
            args = []
            for a in step.args:
                if isinstance(a, ConstArg) and a.name in rename:
                    args.append(replace(a, symbol=rename[a.name]))
                else:
                    args.append(a)
                if isinstance(a, ConstArg) and a.name == "filter" and partial:
                    args.append(ConstArg(a.symbol, "filter_frozen", "int8_t"))
            trained = channels if channels < units else 0
            return replace(step, kernel=kernel, args=tuple(args),
                           layer=replace(step.layer, trained=trained))

        c = self.conv
        if c is not None:
            own.append(ConstArray("mcunet_train_w_scale", "float", h.w_scales.astype(np.float32)))
            if self.conv_update.bias:
                own.append(ConstArray(c.prefix + "qas_bias", "float", c.qas_bias()))
            if self.conv_filter:
                own.append(ConstArray(c.prefix + "qas_filter", "float", c.qas_filter()))
            at = [i for i, s in enumerate(steps) if s.op.index == c.op_index]
            assert len(at) == 1
            fused = steps[at[0]].layer.fused_add
            assert fused is None or fused.op == c.add_op, "only the residual ADD under the pool"
            old = steps[at[0]]
            symbols = {a.name: a.symbol for a in old.args if isinstance(a, ConstArg)}
            self.symbols.update(filter0=symbols["filter"], bias0=c.prefix + "bias0")
            # The conv's own bias and rescale (the graph's: the lowering gives channels whose
            # output is a constant, e.g. VWW op 26's zero filters with bias -2^30, smaller
            # constants; a trained bias starts from the model's and moves), the bias in RAM
            # when trained.
            own += [ConstArray(c.prefix + "bias0", "int32_t", c.bias),
                    ConstArray(c.prefix + "multiplier", "int32_t", c.multiplier),
                    ConstArray(c.prefix + "shift", "int32_t", c.shift)]
            new = trained_step(old, c.prefix, self.conv_update.bias, self.conv_filter,
                               self.conv_channels, c.units, kernels.CONV2D_TRAIN_S8)
            steps = steps[:at[0]] + [new] + steps[at[0] + 1:]
        d = self.dw
        if d is not None:
            own += [ConstArray(c.prefix + "w_scale", "float", c.w_scales.astype(np.float32)),
                    ConstArray(d.prefix + "bias0", "int32_t", d.bias),
                    ConstArray(d.prefix + "multiplier", "int32_t", d.multiplier),
                    ConstArray(d.prefix + "shift", "int32_t", d.shift)]
            if self.dw_update.bias:
                own.append(ConstArray(d.prefix + "qas_bias", "float", d.qas_bias()))
            if self.dw_filter:
                own.append(ConstArray(d.prefix + "qas_filter", "float", d.qas_filter()))
            at = [i for i, s in enumerate(steps) if s.op.index == d.op_index]
            assert len(at) == 1
            old = steps[at[0]]
            symbols = {a.name: a.symbol for a in old.args if isinstance(a, ConstArg)}
            self.symbols.update(dw_filter0=symbols["filter"])
            # The depthwise's own bias and rescale (the graph's, not the lowering's folded
            # constant channels: a trained bias moves), and its filter in RAM when trained.
            new = trained_step(old, d.prefix, self.dw_update.bias, self.dw_filter,
                               self.dw_channels, d.channels, kernels.CONV2D_TRAIN_S8
                               if d.is_conv else kernels.DEPTHWISE_CONV_TRAIN_S8)
            steps = steps[:at[0]] + [new] + steps[at[0] + 1:]
        used = {a.symbol for s in steps for a in s.args if isinstance(a, ConstArg)}
        used |= set(self.symbols.values())
        return steps, [k for k in consts if k.symbol in used] + own

    @property
    def symbols(self) -> dict:
        """The flash symbols of the conv's original filter and bias (set by rewrite)."""
        return self._symbols

    def template_vars(self, graph: Graph, plan) -> dict:
        """What templates/train_api.h.j2 and train_step.c.j2 render from."""
        h = self.head
        out = {"scheme": str(self.scheme), "filter": self.updates_filter, "units": h.units,
               "bias": self.head_update.bias, "k": self.head_channels,
               "depth": h.depth, "x_offset": plan.tensor_offset(h.x),
               "logits_offset": plan.tensor_offset(h.y), "x_zp": h.x_zp, "y_zp": h.y_zp,
               "y_scale": c_float(h.y_scale), "lr": c_float(self.lr),
               "momentum": c_float(self.momentum), "static_bytes": self.static_bytes,
               "filter_limit": c_float(FILTER_LIMIT), "bias_limit": c_float(BIAS_LIMIT),
               "exp_min": c_float(EXP_MIN), "log2e": c_float(LOG2E),
               "ln2_hi": c_float(LN2_HI), "ln2_lo": c_float(LN2_LO),
               "exp_poly": [c_float(c) for c in EXP_POLY], "sqrt2": c_float(SQRT2),
               "ln2": c_float(LN2), "log_poly": [c_float(c) for c in LOG_POLY],
               "head_op": h.op_index, "what": self.what,
               "filter_offset": h.filter_offset, "conv": None,
               "state": self.template_state()}
        c = self.conv
        if c is not None:
            out["conv"] = {"op": c.op_index, "prefix": c.prefix, "filter": self.conv_filter,
                           "bias": self.conv_update.bias, "k": self.conv_channels,
                           "pixels": c.pixels, "units": c.units, "depth": c.depth,
                           "x_offset": plan.tensor_offset(c.x), "y_offset": plan.tensor_offset(c.y),
                           "x_zp": c.x_zp, "count": c_float(c.pixels), "pool_op": c.pool_op,
                           "mask": c.mask_condition(),
                           "filter0": self.symbols["filter0"], "bias0": self.symbols["bias0"]}
        d = self.dw
        out["dw"] = None
        if d is not None:
            out["dw"] = {"op": d.op_index, "prefix": d.prefix, "filter": self.dw_filter,
                         "is_conv": d.is_conv, "ic": d.in_channels, "kind": d.kind,
                         "wpc": d.weights_per_channel,
                         "bias": self.dw_update.bias, "k": self.dw_channels,
                         "ih": d.ih, "iw": d.iw, "oh": d.oh, "ow": d.ow, "channels": d.channels,
                         "kh": d.kh, "kw": d.kw, "sh": d.sh, "sw": d.sw, "taps": d.taps,
                         "pad_top": d.pad_top, "pad_left": d.pad_left,
                         "x_offset": plan.tensor_offset(d.x), "y_offset": plan.tensor_offset(d.y),
                         "x_zp": d.x_zp, "mask": d.mask_condition(),
                         "filter0": self.symbols["dw_filter0"],
                         "conv_w": (c.prefix + "filter") if self.conv_filter
                         else self.symbols["filter0"], "conv_k": self.conv_channels,
                         "conv_w0": self.symbols["filter0"]}
        return out

    def summary(self, compiled) -> dict:
        """`plan --json`'s training figures."""
        h = self.head
        kinds = {h.op_index: "FULLY_CONNECTED"}
        if self.conv is not None:
            kinds[self.conv.op_index] = "CONV_2D"
        if self.dw is not None:
            kinds[self.dw.op_index] = self.dw.kind
        return {"scheme": str(self.scheme), "updates": self.what,
                "head_op": h.op_index,
                "layers": [op for _, op, u, _ in self.layers() if u.trains],
                "layer_updates": [{"op": op, "kind": kinds[op], "bias": u.bias,
                                   "weight_channels": u.channels, "channels": n}
                                  for _, op, u, n in self.layers()],
                "sparse": self.sparse,
                "parameters": self.parameters,
                "static_bytes": self.static_bytes,
                "gradient_bytes": self.gradient_bytes,
                "kept_tensor_bytes": sum(compiled.graph.t(t).nbytes for t in self.keep),
                "training_peak_sram_bytes": compiled.peak_sram_bytes,
                "training_flash_bytes": compiled.flash_bytes,
                "training_flash_total_bytes": compiled.flash_total_bytes,
                "lr": self.lr, "momentum": self.momentum}


def _resolve_op(graph: Graph, scheme: SparseScheme, entry: LayerSpec, head: Head) -> Op:
    """The op a sparse scheme's entry names, or McunetError (an unknown index or name)."""
    where = f"{entry.where}.op"
    if entry.op == "head":
        return graph.ops[head.op_index]
    if isinstance(entry.op, int):
        ops = [op for op in graph.ops if op.index == entry.op]
        if not ops:
            raise _sparse_error(scheme.path, where, f"no op {entry.op} in this model (its ops "
                                f"are 0-{len(graph.ops) - 1}: `mcunet plan --layers` lists them)")
        return ops[0]
    ops = [op for op in graph.ops if any(graph.t(t).name == entry.op for t in op.outputs)]
    if not ops:
        raise _sparse_error(scheme.path, where, f"no op of this model outputs a tensor named "
                            f"{entry.op!r} (give an op index, \"head\" or a tensor name)")
    return ops[0]


def ratio_channels(ratio: float | None, channels: int) -> int:
    """How many of a layer's output channels a sparse scheme's weight ratio trains (its first
    ones): ceil(ratio x channels), at least 1 and at most all; 0 for no ratio (None)."""
    if ratio is None:
        return 0
    return max(1, min(channels, math.ceil(ratio * channels - 1e-9)))


def sparse_training(graph: Graph, scheme: SparseScheme, head: Head, conv: ConvTail | None,
                    dw: DepthwiseTail | None, stop: str) -> Training:
    """The Training of a sparse scheme: each listed layer's update (its first
    ceil(ratio x channels) output channels' weights, its biases); the layers not listed are
    frozen, and the backward ends at the lowest listed one. McunetError naming the field for
    a layer the backward does not reach, or listed twice."""
    reach = [(head.op_index, head.units, "the head")]
    if conv is not None:
        reach.append((conv.op_index, conv.units, "CONV_2D"))
    if dw is not None:
        reach.append((dw.op_index, dw.channels, dw.kind))
    names = ", ".join(f"op {op} ({what})" for op, _, what in reach)
    updates: dict[int, Update] = {}
    for entry in scheme.layers:
        op = _resolve_op(graph, scheme, entry, head)
        at = [k for k, (index, _, _) in enumerate(reach) if index == op.index]
        if not at:
            raise _sparse_error(scheme.path, f"{entry.where}.op", f"{_op_name(op)} is not a layer "
                                f"the backward reaches: on this model it trains {names}, and "
                                f"below op {reach[-1][0]} it stops at {stop}")
        if op.index in updates:
            raise _sparse_error(scheme.path, f"{entry.where}.op", f"op {op.index} is listed "
                                "twice")
        channels = reach[at[0]][1]
        updates[op.index] = Update(entry.bias, ratio_channels(entry.weights, channels))
    lowest = max(k for k, (index, _, _) in enumerate(reach) if index in updates)
    frozen = Update(False, 0)
    return Training(scheme, head, conv if lowest >= 1 else None, dw if lowest >= 2 else None,
                    head_update=updates.get(head.op_index, frozen),
                    conv_update=updates.get(conv.op_index, frozen) if lowest >= 1 else None,
                    dw_update=updates.get(dw.op_index, frozen) if lowest >= 2 else None)


def prepare(graph: Graph, spec, options: LibraryOptions) -> Training:
    """The Training of a --train SPEC for this graph, or McunetError."""
    scheme = parse_scheme(spec)
    if options.arithmetic != "reference":
        raise McunetError("--train with --arithmetic tflm is not supported yet: training "
                          "builds use TFLite's reference arithmetic")
    head = find_head(graph)
    if scheme == "last:1":
        scheme = "head"
    if scheme == "head":
        return Training(scheme, head)
    conv, stop = find_tail(graph, head)
    dw = None
    if conv is not None:
        dw, below = find_depthwise(graph, conv)
    if scheme == "bias":
        return Training(scheme, head, conv, dw)
    if isinstance(scheme, SparseScheme):
        stop = stop if conv is None else below
        return sparse_training(graph, scheme, head, conv, dw, stop)
    n = int(scheme[5:])
    reach = 1 if conv is None else 2 if dw is None else 3
    if n > reach:
        layer = ["the head", f"CONV_2D (op {conv.op_index})" if conv else "",
                 f"{dw.kind} (op {dw.op_index})" if dw else ""][reach - 1]
        stop = stop if reach == 1 else below
        raise McunetError(f"--train {scheme}: the backward below {layer} reaches {stop}; "
                          f"this version passes through {BACKWARD_OPS}, so at most "
                          f"last:{reach} on this model")
    return Training(scheme, head, conv, dw if n >= 3 else None)


# ---------------------------------------------------------------------------------------------
# The reference: the same arithmetic in NumPy, operation for operation.


def _bits(x: np.float32) -> int:
    return int(np.array([x], dtype=np.float32).view(np.uint32)[0])


def _from_bits(u: int) -> np.float32:
    return np.array([u], dtype=np.uint32).view(np.float32)[0]


def train_exp(x: np.float32) -> np.float32:
    """e^x for x <= 0, as the C's train_exp computes it."""
    if x < EXP_MIN:
        return F(0.0)
    t = x * LOG2E + F(0.5)
    k = int(t)  # truncation toward zero, as the C cast
    if F(k) > t:
        k -= 1
    kf = F(k)
    r = x - kf * LN2_HI
    r = r - kf * LN2_LO
    p = EXP_POLY[0]
    for c in EXP_POLY[1:]:
        p = p * r + c
    return p * _from_bits((k + 127) << 23)


def train_log(x: np.float32) -> np.float32:
    """log(x) for a positive normal x, as the C's train_log computes it."""
    u = _bits(x)
    e = (u >> 23) - 127
    m = _from_bits((u & 0x7FFFFF) | 0x3F800000)
    if m > SQRT2:
        m = m * F(0.5)
        e += 1
    f = m - F(1.0)
    s = f / (F(2.0) + f)
    z = s * s
    p = LOG_POLY[0]
    for c in LOG_POLY[1:]:
        p = p * z + c
    return F(e) * LN2 + (F(2.0) * s) * p


def residual_add(p, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's int8 ADD of a and b (same shape) with AddArith p, elementwise."""
    a = np.asarray(a, np.int64).reshape(-1)
    b = np.asarray(b, np.int64).reshape(-1)
    x = _requantize((a + p.input1_offset) << p.left_shift, p.input1_multiplier, p.input1_shift)
    y = _requantize((b + p.input2_offset) << p.left_shift, p.input2_multiplier, p.input2_shift)
    s = _wrap32(_requantize(_wrap32(x + y), p.output_multiplier, p.output_shift) +
                p.output_offset)
    return np.clip(s, p.act_min, p.act_max).astype(np.int8)


def round_delta(v: np.ndarray, limit: np.float32) -> np.ndarray:
    """Deltas rounded half away from zero as the C's train_round: NaN to 0, clamped to the
    limit, trunc(v + 0.5) or -trunc(0.5 - v) in float32."""
    v = np.where(np.isnan(v), F(0.0), v).astype(np.float32)
    v = np.minimum(np.maximum(v, -limit), limit)
    up = np.trunc(v + F(0.5))
    down = -np.trunc(F(0.5) - v)
    return np.where(v >= F(0.0), up, down).astype(np.int64)


def _wrap32(v: np.ndarray) -> np.ndarray:
    return ((np.asarray(v, dtype=np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int64)


def _requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """mcunet_requantize (TFLite's MultiplyByQuantizedMultiplier) elementwise, in int64."""
    acc = np.asarray(acc, np.int64)
    m = np.broadcast_to(np.asarray(multiplier, np.int64), acc.shape)
    sh = np.broadcast_to(np.asarray(shift, np.int64), acc.shape)
    left, right = np.maximum(sh, 0), np.maximum(-sh, 0)
    a = _wrap32(acc << left)
    ab = a * m
    v = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(v >= 0, v >> 31, -((-v) >> 31))
    q = np.where((a == -(1 << 31)) & (m == -(1 << 31)), (1 << 31) - 1, q)
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (q < 0)
    return (q >> right) + ((q & mask) > threshold)


class TrainReference:
    """The training arithmetic of a Training in NumPy: the trained tail's int8 forward from
    its entry tensor (Training.entry: the head's input, or the conv's), the loss, the
    backward and the update. State: filter (int8), bias (int32), and the float32 deltas and
    velocities, as the C's mcunet_train_* arrays (state() names them as the harnesses do)."""

    def __init__(self, training: Training, lr: float | None = None,
                 momentum: float | None = None):
        self.t = training
        self.h = training.head
        self.c = training.conv
        self.d = training.dw
        self._taps = self.d.tap_index() if self.d is not None else None
        self.lr = F(training.lr if lr is None else lr)
        self.momentum = F(training.momentum if momentum is None else momentum)
        self.reset()

    def reset(self) -> None:
        """The model's parameters, zero deltas and velocities. filter/bias (and conv's,
        dw's) hold every channel as invoke uses them; the deltas and velocities the trained
        channels only, as the C's arrays."""
        h, t = self.h, self.t
        k = t.head_channels
        self.filter = h.filter.copy()
        self.bias = h.bias.copy()
        self.filter_delta = np.zeros((k, h.depth), np.float32)
        self.filter_velocity = np.zeros((k, h.depth), np.float32)
        self.bias_delta = np.zeros(h.units, np.float32)
        self.bias_velocity = np.zeros(h.units, np.float32)
        c = self.c
        if c is not None:
            k = t.conv_channels
            self.conv = {"filter": c.filter.copy(), "bias": c.bias.copy(),
                         "filter_delta": np.zeros((k, c.depth), np.float32),
                         "filter_velocity": np.zeros((k, c.depth), np.float32),
                         "bias_delta": np.zeros(c.units, np.float32),
                         "bias_velocity": np.zeros(c.units, np.float32)}
        d = self.d
        if d is not None:
            k = t.dw_channels
            shape = (k, d.weights_per_channel) if d.is_conv else (d.taps, k)
            self.dw = {"filter": d.filter.copy(), "bias": d.bias.copy(),
                       "filter_delta": np.zeros(shape, np.float32),
                       "filter_velocity": np.zeros(shape, np.float32),
                       "bias_delta": np.zeros(d.channels, np.float32),
                       "bias_velocity": np.zeros(d.channels, np.float32)}

    def state(self) -> dict[str, np.ndarray]:
        """The state as the harnesses write it (Training.state_layout's keys; a filter's
        trained channels only)."""
        out = {}
        t = self.t
        for key, _, _, shape in t.state_layout():
            if self.d is not None and key.startswith(self.d.key):
                name, store, k = key[len(self.d.key):], self.dw, t.dw_channels
                value = (store[name][:k] if self.d.is_conv else store[name][:, :k]) \
                    if name == "filter" else store[name]
            elif self.c is not None and key.startswith(self.c.key):
                name, store, k = key[len(self.c.key):], self.conv, t.conv_channels
                value = store[name][:k] if name == "filter" else store[name]
            else:
                value = self.filter[:t.head_channels] if key == "filter" else getattr(self, key)
            out[key] = np.ascontiguousarray(value)
        return out

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The entry tensor's values and the residual's (None without a residual ADD) from
        the concatenated values of Training.entries."""
        c = self.c
        if c is None or c.residual is None:
            return x, None
        x = np.asarray(x).reshape(-1)
        n = c.pixels * c.units
        return x[:-n], x[-n:]

    def conv_forward(self, x: np.ndarray, r: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The conv's int8 output [pixels][units] (with a residual ADD: the ADD's output, of
        the conv's and the residual r) and the pooled head input [units] for the conv's int8
        input x (TFLite's reference arithmetic: the portable conv kernel, the ADD and the
        global average pool)."""
        c = self.c
        xs = x.reshape(c.pixels, c.depth).astype(np.int64) - c.x_zp
        acc = _wrap32(int_matmul(xs, self.conv["filter"].T) +
                      self.conv["bias"].astype(np.int64))
        y = _wrap32(_requantize(acc, c.multiplier, c.shift) + c.y_zp)
        y = np.clip(y, c.act_min, c.act_max).astype(np.int8)
        if c.add is not None:
            y = residual_add(c.add, *((r, y) if c.residual_first else (y, r))).reshape(y.shape)
        total = y.astype(np.int64).sum(axis=0)
        if c.mean is not None:
            offset, multiplier, shift, zp = c.mean
            q = _wrap32(_requantize(_wrap32(total + offset), multiplier, shift) + zp)
            return y, np.clip(q, -128, 127).astype(np.int8)
        n = c.pixels
        avg = np.where(total > 0, (total + n // 2) // n, -((n // 2 - total) // n))
        return y, np.clip(avg, c.pool_min, c.pool_max).astype(np.int8)

    def dw_forward(self, x: np.ndarray) -> np.ndarray:
        """The depthwise's int8 output [pixels][channels] for its int8 input x (TFLite's
        reference arithmetic: padding contributes nothing)."""
        d = self.d
        depth = d.in_channels if d.is_conv else d.channels
        xc = x.reshape(d.ih * d.iw, depth).astype(np.int64) - d.x_zp
        xc = np.concatenate([xc, np.zeros((1, depth), np.int64)])  # the padding row
        w = self.dw["filter"].astype(np.int64)
        if d.is_conv:  # CONV_2D: [channels][taps][in_channels]; windows [pixels][taps][in]
            windows = xc[self._taps.T].reshape(d.pixels, d.taps * depth)
            acc = int_matmul(windows, w.reshape(d.channels, d.taps * depth).T)
        else:
            acc = np.zeros((d.pixels, d.channels), np.int64)
            for k in range(d.taps):
                acc += xc[self._taps[k]] * w[k][None, :]
        acc = _wrap32(_wrap32(acc) + self.dw["bias"].astype(np.int64))
        y = _wrap32(_requantize(acc, d.multiplier, d.shift) + d.y_zp)
        return np.clip(y, d.act_min, d.act_max).astype(np.int8)

    def dw_terms(self, x: np.ndarray, ydw: np.ndarray, y: np.ndarray, dx: np.ndarray):
        """The depthwise's float32 gradient sums from the conv's input gradient, in the C's
        order: g[p][i] = sum over o in order of (mask[p][o] ? (dx[o] / P) s_w[o] : 0) W[o][i]
        (the conv's forward filter), zero where the depthwise's own mask does not pass;
        T[k][i] = sum over output pixels p in order of g[p][i] (x[tap k of p][i] - zp_x)
        (padding taps add nothing), B[i] = sum over p in order of g[p][i]."""
        c, d = self.c, self.d
        mask = np.ones(y.shape, bool)
        if c.mask_lo is not None:
            mask &= y > c.mask_lo
        if c.mask_hi is not None:
            mask &= y < c.mask_hi
        b = ((dx / F(c.pixels)).astype(np.float32) * c.w_scales.astype(np.float32)
             ).astype(np.float32)
        w = self.conv["filter"].astype(np.float32)
        # g[p][i], summed over o in the C's order (in_order: term by term, in float32).
        terms = np.where(mask.T[:, :, None], b[:, None, None], F(0.0)).astype(np.float32) * \
            w[:, None, :]
        g = in_order(terms)
        dmask = np.ones(ydw.shape, bool)
        if d.mask_lo is not None:
            dmask &= ydw > d.mask_lo
        if d.mask_hi is not None:
            dmask &= ydw < d.mask_hi
        g = np.where(dmask, g, F(0.0)).astype(np.float32)
        depth = d.in_channels if d.is_conv else d.channels
        xc = (x.reshape(d.ih * d.iw, depth).astype(np.int32) - d.x_zp).astype(np.float32)
        xc = np.concatenate([xc, np.zeros((1, depth), np.float32)])
        total = in_order(g)
        windows = xc[self._taps.T]  # [p][k][i]: tap k of output pixel p
        if d.is_conv:
            # T[o][k][i] = sum over p in order of g[p][o] (x[tap k of p][i] - zp_x).
            taps = in_order(g[:, :, None, None] * windows[:, None, :, :])
            return taps.reshape(d.channels, d.taps * depth), total
        return in_order(g[:, None, :] * windows), total

    def head_logits(self, x: np.ndarray) -> np.ndarray:
        """The head's int8 output for its int8 input row x (TFLite's reference arithmetic)."""
        h = self.h
        xs = x.reshape(-1).astype(np.int64) - h.x_zp
        ws = self.filter.astype(np.int64) + h.filter_offset
        acc = _wrap32(int_matmul(ws, xs) + self.bias.astype(np.int64))
        out = np.empty(h.units, np.int8)
        for u in range(h.units):
            k = u if h.per_channel else 0
            r = round_scaled(int(acc[u]), int(h.mantissa[k]), int(h.shift[k]))
            out[u] = min(max(int(_wrap32(r + h.y_zp)), h.act_min), h.act_max)
        return out

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The head's int8 logits for the entry tensor's int8 values x (Training.entries')."""
        x, r = self.split(x)
        if self.d is not None:
            x = self.dw_forward(x)
        if self.c is not None:
            x = self.conv_forward(x, r)[1]
        return self.head_logits(x)

    def gradient(self, logits: np.ndarray, label: int) -> tuple[np.float32, np.ndarray]:
        """(loss, dL/dz) in float32 from the int8 logits, in the C's order."""
        h = self.h
        z = [h_scale * F(int(q) - h.y_zp) for h_scale, q in
             zip([F(h.y_scale)] * h.units, logits)]
        m = z[0]
        for v in z[1:]:
            m = v if v > m else m
        e = [train_exp(v - m) for v in z]
        total = F(0.0)
        for v in e:
            total = total + v
        loss = train_log(total) - (z[label] - m)
        dz = np.array([v / total for v in e], dtype=np.float32)
        dz[label] = dz[label] - F(1.0)
        return loss, dz

    def head_input_gradient(self, dz: np.ndarray) -> np.ndarray:
        """dL/dx (real units) of the head's input: sum over u in order of
        (dz[u] s_w[u]) (W[u] - zp_w), with the forward's filter."""
        h = self.h
        dx = np.zeros(h.depth, np.float32)
        scales = h.w_scales.astype(np.float32)
        for u in range(h.units):
            t = dz[u] * scales[u]
            dx = dx + t * (self.filter[u].astype(np.int32) + h.filter_offset).astype(np.float32)
        return dx

    def conv_terms(self, x: np.ndarray, y: np.ndarray, dx: np.ndarray):
        """a = dL/d(conv output) where the mask passes (dx / pixels), the mask's count per
        channel, and S[c][i] = sum over passing pixels of the centred input (exact ints)."""
        c = self.c
        mask = np.ones(y.shape, bool)
        if c.mask_lo is not None:
            mask &= y > c.mask_lo
        if c.mask_hi is not None:
            mask &= y < c.mask_hi
        a = (dx / F(c.pixels)).astype(np.float32)
        xc = x.reshape(c.pixels, c.depth).astype(np.int64) - c.x_zp
        return a, mask.sum(axis=0), int_matmul(mask.T, xc)

    def _sgd(self, g, velocity, delta):
        velocity = (self.momentum * velocity + g).astype(np.float32)
        return velocity, (delta - self.lr * velocity).astype(np.float32)

    def step(self, x: np.ndarray, label: int) -> tuple[np.float32, np.ndarray]:
        """One training step on the entry tensor's values x (Training.entries'); returns
        (loss, the logits)."""
        h, c, d, t = self.h, self.c, self.d, self.t
        x, r = self.split(x)
        x_dw = x
        if d is not None:
            x = ydw = self.dw_forward(x_dw)
        head_x = x
        if c is not None:
            y, head_x = self.conv_forward(x, r)
        logits = self.head_logits(head_x)
        loss, dz = self.gradient(logits, label)
        dx = self.head_input_gradient(dz) if c is not None else None
        if t.head_update.bias:
            g = dz * self.h.qas_bias()
            self.bias_velocity, self.bias_delta = self._sgd(g, self.bias_velocity,
                                                            self.bias_delta)
            b = h.bias.astype(np.int64) + round_delta(self.bias_delta, BIAS_LIMIT)
            self.bias = np.clip(b, -(1 << 31), (1 << 31) - 1).astype(np.int32)
        k = t.head_channels
        if k:
            a = dz[:k] * h.qas_filter()[:k]
            xc = (head_x.reshape(-1).astype(np.int32) - h.x_zp).astype(np.float32)
            g = a[:, None] * xc[None, :]
            self.filter_velocity, self.filter_delta = self._sgd(g, self.filter_velocity,
                                                                self.filter_delta)
            w = h.filter[:k].astype(np.int64) + round_delta(self.filter_delta, FILTER_LIMIT)
            self.filter[:k] = np.clip(w, -127, 127).astype(np.int8)
        if d is not None:  # before the conv's update: its input gradient uses the forward's filter
            s = self.dw
            taps, total = self.dw_terms(x_dw, ydw, y, dx)
            if t.dw_update.bias:
                g = (total * d.qas_bias()).astype(np.float32)
                s["bias_velocity"], s["bias_delta"] = self._sgd(g, s["bias_velocity"],
                                                                s["bias_delta"])
                b = d.bias.astype(np.int64) + round_delta(s["bias_delta"], BIAS_LIMIT)
                s["bias"] = np.clip(b, -(1 << 31), (1 << 31) - 1).astype(np.int32)
            k = t.dw_channels
            if k and d.is_conv:
                g = (taps[:k] * d.qas_filter()[:k, None]).astype(np.float32)
                s["filter_velocity"], s["filter_delta"] = self._sgd(
                    g, s["filter_velocity"], s["filter_delta"])
                w = d.filter[:k].astype(np.int64) + round_delta(s["filter_delta"], FILTER_LIMIT)
                s["filter"][:k] = np.clip(w, -127, 127).astype(np.int8)
            elif k:
                g = (taps[:, :k] * d.qas_filter()[None, :k]).astype(np.float32)
                s["filter_velocity"], s["filter_delta"] = self._sgd(
                    g, s["filter_velocity"], s["filter_delta"])
                w = d.filter[:, :k].astype(np.int64) + round_delta(s["filter_delta"],
                                                                   FILTER_LIMIT)
                s["filter"][:, :k] = np.clip(w, -127, 127).astype(np.int8)
        if c is not None:
            s = self.conv
            a, count, sums = self.conv_terms(x, y, dx)
            if t.conv_update.bias:
                g = (a * count.astype(np.float32)) * c.qas_bias()
                s["bias_velocity"], s["bias_delta"] = self._sgd(g, s["bias_velocity"],
                                                                s["bias_delta"])
                b = c.bias.astype(np.int64) + round_delta(s["bias_delta"], BIAS_LIMIT)
                s["bias"] = np.clip(b, -(1 << 31), (1 << 31) - 1).astype(np.int32)
            k = t.conv_channels
            if k:
                g = (a[:k] * c.qas_filter()[:k])[:, None] * sums[:k].astype(np.float32)
                s["filter_velocity"], s["filter_delta"] = self._sgd(
                    g, s["filter_velocity"], s["filter_delta"])
                w = c.filter[:k].astype(np.int64) + round_delta(s["filter_delta"], FILTER_LIMIT)
                s["filter"][:k] = np.clip(w, -127, 127).astype(np.int8)
        return loss, logits

    def real_gradients(self, x: np.ndarray, label: int) -> dict[str, np.ndarray]:
        """The gradients of the real-valued parameters (float32) at the current state: what
        TensorFlow's autodiff of the float computation is checked against. Keys: filter,
        bias (the head's), and for a trained conv conv_filter, conv_bias."""
        h, c, d = self.h, self.c, self.d
        x, r = self.split(x)
        x_dw = x
        if d is not None:
            x = ydw = self.dw_forward(x_dw)
        head_x = x if c is None else self.conv_forward(x, r)[1]
        _, dz = self.gradient(self.head_logits(head_x), label)
        xr = (head_x.reshape(-1).astype(np.int32) - h.x_zp).astype(np.float32) * F(h.x_scale)
        out = {"filter": dz[:, None] * xr[None, :], "bias": dz}
        if c is not None:
            y, _ = self.conv_forward(x, r)
            a, count, sums = self.conv_terms(x, y, self.head_input_gradient(dz))
            out["conv_bias"] = a * count.astype(np.float32)
            out["conv_filter"] = a[:, None] * (sums.astype(np.float32) * F(c.x_scale))
            if d is not None:
                taps, total = self.dw_terms(x_dw, ydw, y, self.head_input_gradient(dz))
                out["dw_bias"] = total
                out["dw_filter"] = taps * F(d.x_scale)
        return out

"""On-device training, first slice (issue 14): `--train head` and `--train bias`.

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

from dataclasses import dataclass, replace

import numpy as np

from .codegen import kernels
from .codegen.library import LibraryOptions
from .errors import McunetError
from .graph import Graph, Op
from .layers import FullyConnectedLayer
from .quant import activation_range, double_parts, round_scaled
from .step import ConstArg, ConstArray, Step, TensorArg

SCHEMES = {"head": "the last FULLY_CONNECTED layer's weights and bias",
           "bias": "the last FULLY_CONNECTED layer's bias"}
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


def c_float(value) -> str:
    """A float32 value as an exact C literal (hexadecimal, float suffix)."""
    return float(F(value)).hex() + "f"


def parse_scheme(spec: str) -> str:
    """The --train SPEC, or McunetError naming what is and is not supported yet."""
    if spec in SCHEMES:
        return spec
    if spec.startswith("last:"):
        raise McunetError(f"--train {spec}: updating the weights of the last N layers is not "
                          "supported yet; this version trains `head` (the last fully connected "
                          "layer's weights and bias) or `bias` (its bias)")
    if spec.endswith(".json"):
        raise McunetError(f"--train {spec}: sparse update schemes (per-layer channel ratios in "
                          "JSON) are not supported yet; this version trains `head` or `bias`")
    raise McunetError(f"--train {spec!r} is not a training scheme: give head or bias "
                      "(last:N and sparse JSON schemes are not supported yet)")


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


@dataclass(frozen=True)
class Training:
    """A training build: the scheme, its head, and what it adds to the library."""
    scheme: str
    head: Head
    lr: float = DEFAULT_LR
    momentum: float = DEFAULT_MOMENTUM

    @property
    def updates_filter(self) -> bool:
        return self.scheme == "head"

    @property
    def keep(self) -> tuple[int, ...]:
        """The tensors the training step reads after the forward pass (live to its end)."""
        return (self.head.x, self.head.y) if self.updates_filter else (self.head.y,)

    def static_arrays(self) -> list[tuple[str, str, int]]:
        """(symbol, C type, elements) of the static RAM the training code defines, besides
        four scalars (learning rate, momentum, last loss: float; initialised: int)."""
        u, d = self.head.units, self.head.depth
        arrays = [("mcunet_train_bias", "int32_t", u), ("mcunet_train_bias_delta", "float", u),
                  ("mcunet_train_bias_velocity", "float", u), ("train_dz", "float", u)]
        if self.updates_filter:
            arrays += [("mcunet_train_filter", "int8_t", u * d),
                       ("mcunet_train_filter_delta", "float", u * d),
                       ("mcunet_train_filter_velocity", "float", u * d)]
        return arrays

    @property
    def static_bytes(self) -> int:
        size = {"int8_t": 1, "int32_t": 4, "float": 4}
        return sum(size[c] * n for _, c, n in self.static_arrays()) + 4 * 4

    def rewrite(self, graph: Graph, steps: list[Step], consts: list[ConstArray]
                ) -> tuple[list[Step], list[ConstArray]]:
        """The head's step on the trainable kernel with its parameters where training keeps
        them, and the flash contents: the original filter and bias (what reset restores),
        the rescale, the QAS factors; the head's own packed constants go."""
        h = self.head
        at = [i for i, s in enumerate(steps) if s.op.index == h.op_index]
        assert len(at) == 1, "one step per op before any patch stage"
        old = steps[at[0]]
        own = [ConstArray("mcunet_train_filter0", "int8_t", h.filter.reshape(-1)),
               ConstArray("mcunet_train_bias0", "int32_t", h.bias),
               ConstArray("mcunet_train_mantissa", "uint64_t", h.mantissa),
               ConstArray("mcunet_train_shift", "int32_t", h.shift),
               ConstArray("mcunet_train_qas_bias", "float", h.qas_bias())]
        if self.updates_filter:
            own.append(ConstArray("mcunet_train_qas_filter", "float", h.qas_filter()))
        layer = FullyConnectedLayer(batches=1, units=h.units, depth=h.depth,
                                    per_channel=h.per_channel, filter_offset=h.filter_offset,
                                    input_offset=-h.x_zp, output_offset=h.y_zp,
                                    act_min=h.act_min, act_max=h.act_max)
        args = (TensorArg(h.x, "input"),
                ConstArg("mcunet_train_filter" if self.updates_filter else "mcunet_train_filter0",
                         "filter", "int8_t"),
                ConstArg("mcunet_train_bias", "bias", "int32_t"),
                ConstArg("mcunet_train_mantissa", "mantissa", "uint64_t"),
                ConstArg("mcunet_train_shift", "shift", "int32_t"),
                TensorArg(h.y, "output", output=True))
        new = replace(old, kernel=kernels.FULLY_CONNECTED_TRAIN_S8, layer=layer, args=args)
        steps = steps[:at[0]] + [new] + steps[at[0] + 1:]
        used = {a.symbol for s in steps for a in s.args if isinstance(a, ConstArg)}
        return steps, [c for c in consts if c.symbol in used] + own

    def template_vars(self, graph: Graph, plan) -> dict:
        """What templates/train_api.h.j2 and train_step.c.j2 render from."""
        h = self.head
        return {"scheme": self.scheme, "filter": self.updates_filter, "units": h.units,
                "depth": h.depth, "x_offset": plan.tensor_offset(h.x),
                "logits_offset": plan.tensor_offset(h.y), "x_zp": h.x_zp, "y_zp": h.y_zp,
                "y_scale": c_float(h.y_scale), "lr": c_float(self.lr),
                "momentum": c_float(self.momentum), "static_bytes": self.static_bytes,
                "filter_limit": c_float(FILTER_LIMIT), "bias_limit": c_float(BIAS_LIMIT),
                "exp_min": c_float(EXP_MIN), "log2e": c_float(LOG2E),
                "ln2_hi": c_float(LN2_HI), "ln2_lo": c_float(LN2_LO),
                "exp_poly": [c_float(c) for c in EXP_POLY], "sqrt2": c_float(SQRT2),
                "ln2": c_float(LN2), "log_poly": [c_float(c) for c in LOG_POLY],
                "head_op": h.op_index, "what": SCHEMES[self.scheme]}

    def summary(self, compiled) -> dict:
        """`plan --json`'s training figures."""
        h = self.head
        return {"scheme": self.scheme, "updates": SCHEMES[self.scheme], "head_op": h.op_index,
                "parameters": h.units * (h.depth + 1) if self.updates_filter else h.units,
                "static_bytes": self.static_bytes,
                "kept_tensor_bytes": sum(compiled.graph.t(t).nbytes for t in self.keep),
                "training_peak_sram_bytes": compiled.peak_sram_bytes,
                "training_flash_bytes": compiled.flash_bytes,
                "training_flash_total_bytes": compiled.flash_total_bytes,
                "lr": self.lr, "momentum": self.momentum}


def prepare(graph: Graph, spec: str, options: LibraryOptions) -> Training:
    """The Training of a --train SPEC for this graph, or McunetError."""
    scheme = parse_scheme(spec)
    if options.arithmetic != "reference":
        raise McunetError("--train with --arithmetic tflm is not supported yet: training "
                          "builds use TFLite's reference arithmetic")
    return Training(scheme, find_head(graph))


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


class TrainReference:
    """The training arithmetic of a Training in NumPy: the head's int8 forward from its
    input, the loss, the backward and the update. State: filter (int8), bias (int32), and
    the float32 deltas and velocities, as the C's mcunet_train_* arrays."""

    def __init__(self, training: Training, lr: float | None = None,
                 momentum: float | None = None):
        self.t = training
        self.h = training.head
        self.lr = F(training.lr if lr is None else lr)
        self.momentum = F(training.momentum if momentum is None else momentum)
        self.reset()

    def reset(self) -> None:
        h = self.h
        self.filter = h.filter.copy()
        self.bias = h.bias.copy()
        self.filter_delta = np.zeros((h.units, h.depth), np.float32)
        self.filter_velocity = np.zeros((h.units, h.depth), np.float32)
        self.bias_delta = np.zeros(h.units, np.float32)
        self.bias_velocity = np.zeros(h.units, np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The head's int8 output for its int8 input row x (TFLite's reference arithmetic)."""
        h = self.h
        xs = x.reshape(-1).astype(np.int64) - h.x_zp
        ws = self.filter.astype(np.int64) + h.filter_offset
        acc = _wrap32(ws @ xs + self.bias.astype(np.int64))
        out = np.empty(h.units, np.int8)
        for u in range(h.units):
            k = u if h.per_channel else 0
            r = round_scaled(int(acc[u]), int(h.mantissa[k]), int(h.shift[k]))
            out[u] = min(max(int(_wrap32(r + h.y_zp)), h.act_min), h.act_max)
        return out

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

    def step(self, x: np.ndarray, label: int) -> tuple[np.float32, np.ndarray]:
        """One training step on the head input row x; returns (loss, the forward's logits)."""
        h = self.h
        logits = self.logits(x)
        loss, dz = self.gradient(logits, label)
        mu, lr = self.momentum, self.lr
        g = dz * self.h.qas_bias()
        self.bias_velocity = mu * self.bias_velocity + g
        self.bias_delta = self.bias_delta - lr * self.bias_velocity
        b = h.bias.astype(np.int64) + round_delta(self.bias_delta, BIAS_LIMIT)
        self.bias = np.clip(b, -(1 << 31), (1 << 31) - 1).astype(np.int32)
        if self.t.updates_filter:
            a = dz * h.qas_filter()
            xc = (x.reshape(-1).astype(np.int32) - h.x_zp).astype(np.float32)
            g = a[:, None] * xc[None, :]
            self.filter_velocity = mu * self.filter_velocity + g
            self.filter_delta = self.filter_delta - lr * self.filter_velocity
            w = h.filter.astype(np.int64) + round_delta(self.filter_delta, FILTER_LIMIT)
            self.filter = np.clip(w, -127, 127).astype(np.int8)
        return loss, logits

    def real_gradients(self, x: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
        """dL/dW and dL/db of the real-valued parameters (float32) at the current state: what
        TensorFlow's autodiff of the float computation is checked against."""
        h = self.h
        _, dz = self.gradient(self.logits(x), label)
        xr = (x.reshape(-1).astype(np.int32) - h.x_zp).astype(np.float32) * F(h.x_scale)
        return dz[:, None] * xr[None, :], dz

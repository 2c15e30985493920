"""The cost model: instructions each step of a compiled model executes on a Cortex-M core,
estimated from its kernel record and its layer's shape, and the whole model's latency at a
clock.

Per core and kernel, instructions = c . features(step): a non-negative combination of
counts that the kernels' loops run over (MACs, MACs per pixel block of the DSP
convolution and the MACs of its windows that loop rather than being written out; output values, which each pay a requantisation; input values and channel
planes copied; windows expanded; fused ADDs; calls). The coefficients are fitted
(scripts/fit_costmodel.py, into mcunet/costmodel_table.py) to the instructions counted on
QEMU's emulated MPS2 boards over a corpus of the search space's networks and random layer
stacks (scripts/corpus.py), not over the MLPerf Tiny models, which scripts/bench_costmodel.py
checks it on. QEMU counts instructions, not cycles: the latency assumes one instruction per
cycle (the best case of these in-order cores; flash wait states and multi-cycle loads add
to it), so it is a lower bound, as the anchors' cycle counts are compared with."""
from __future__ import annotations

from dataclasses import dataclass

from .layers import ConvLayer, DepthwiseLayer, FullyConnectedLayer, PoolLayer, Windowed
from .step import ARM_DSP, Step

# Cores the table was measured on, and the measured core standing in for the others.
MEASURED_ON = {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500", "cortex-m3": "mps2-an385",
               "cortex-m33": "mps2-an505"}
STAND_IN = {"cortex-m55": "cortex-m7"}
CYCLES_PER_INSTRUCTION = 1.0  # the assumption behind the latency (a lower bound)

FEATURES = ("calls", "macs", "macs_per_block", "out", "in", "pixels", "im2col", "channels",
            "plane_area", "pair_out", "tap_groups", "channel_taps", "valid_taps", "row_taps",
            "rq_general", "fused", "taps", "looped_macs")


def _out_in(step: Step, graph_sizes) -> tuple[int, int]:
    layer = step.layer
    if isinstance(layer, Windowed):
        w = layer.window
        return w.oh * w.ow * w.oc, w.ih * w.iw * w.ic
    return (sum(graph_sizes(a.tid) for a in step.outputs),
            sum(graph_sizes(a.tid) for a in step.inputs))


def _valid(o: int, k: int, stride: int, dilation: int, pad: int, size: int) -> int:
    """Pairs (output position, kernel tap) along one axis that land inside the input."""
    return sum(1 for y in range(o) for t in range(k)
               if 0 <= y * stride - pad + t * dilation < size)


def features(step: Step, graph) -> dict[str, float]:
    """What the step's kernel loops over (see the module docstring); zero for what it does
    not have."""
    f = dict.fromkeys(FEATURES, 0.0)
    if step.kernel is None:
        return f
    f["calls"] = 1.0
    f["macs"] = float(step.macs)
    out, inp = _out_in(step, lambda tid: graph.t(tid).size)
    f["out"], f["in"] = float(out), float(inp)
    layer = step.layer
    constants = step.kernel.constants(layer)
    block = constants.get("P")
    if block:
        f["macs_per_block"] = step.macs / block
    if constants.get("unrolled") is False:
        # The DSP conv's windows too long to be written out whole: its dot products loop
        # (pointers and their increments; the short ones have every offset a constant).
        f["looped_macs"] = float(step.macs)
    if isinstance(layer, Windowed):
        w = layer.window
        f["pixels"] = float(w.oh * w.ow)
        # The portable kernels skip the taps that fall on padding; the kernel row loop runs
        # for every output regardless.
        per_channel = _valid(w.oh, w.kh, w.sh, w.dh, w.pad_top, w.ih) * \
            _valid(w.ow, w.kw, w.sw, w.dw, w.pad_left, w.iw)
        f["valid_taps"] = float(per_channel * (w.oc if isinstance(layer, ConvLayer) else w.ic))
        f["row_taps"] = float(out * w.kh)
        if isinstance(layer, ConvLayer):
            f["im2col"] = float(w.oh * w.ow * w.kh * w.kw * w.ic)
        if isinstance(layer, DepthwiseLayer):
            f["channels"] = float(w.ic)
            if step.kernel.isa == ARM_DSP and step.kernel.scratch is not None \
                    and step.kernel.scratch.name == "plane":
                # The plane kernels: one padded plane cleared per call, each channel copied
                # in, then either neighbouring outputs sharing their loads (3x3 stride 1)
                # or each output's kernel rows in groups of four taps.
                f["plane_area"] = float(step.kernel.scratch.bytes(layer))
                if (w.kh, w.kw, w.sh, w.sw) == (3, 3, 1, 1):
                    f["pair_out"] = float(w.oh * -(-w.ow // 2) * w.ic)  # pairs, a row's last
                    f["row_taps"] = float(w.oh * w.ic)  # may be half empty; rows
                else:
                    groups = w.kh * ((w.kw + 3) // 4)
                    f["tap_groups"] = float(out * groups)
                    f["channel_taps"] = float(w.ic * groups * 4)  # the filter, repacked
        if isinstance(layer, PoolLayer):
            f["taps"] = float(out * w.kh * w.kw)
    if isinstance(layer, (ConvLayer, DepthwiseLayer)):
        # TFLite's general requantisation (a branch on the shift) where the layer's shifts
        # leave the branch-free range (mcunet_rq2 in mcunet_common.h).
        if not (-31 <= layer.shift_min and layer.shift_max <= -2):
            f["rq_general"] = float(out)
        if isinstance(layer, ConvLayer) and layer.fused_add is not None:
            f["fused"] = float(out)
    if isinstance(layer, FullyConnectedLayer):
        f["out"] = float(layer.batches * layer.units)  # one rescale each (mcunet_round_scaled, in integers)
    return f


def _table() -> dict:
    from .costmodel_table import TABLE
    return TABLE


def core_of(target_name: str) -> str | None:
    """The measured core whose coefficients estimate this target (None: no estimate)."""
    core = STAND_IN.get(target_name, target_name)
    return core if core in _table() else None


# Variants estimated with another's row (the lean DSP conv runs the same code but for
# about 14 instructions a channel pair and block of pixels: bias and requantisation read
# from the arrays, not a record; the lean DSP depthwise the same code with smaller bands);
# boards/stack.py's footprint table takes the same rows.
# (conv2d_s8_dsp_wide_lean likewise, on conv2d_s8_dsp_wide's row: the corpus has few of them.)
FITTED_AS = {"conv2d_s8_dsp_lean": "conv2d_s8_dsp",
             "conv2d_s8_dsp_wide_lean": "conv2d_s8_dsp_wide",
             "depthwise_conv_s8_dsp_lean": "depthwise_conv_s8_dsp"}


def estimate_step(step: Step, graph, core: str) -> int | None:
    """Estimated instructions of one step on the core (None: the table has no row for the
    kernel, or the core is not measured)."""
    if step.kernel is None:
        return 0
    rows = _table().get(core)
    name = FITTED_AS.get(step.kernel.name, step.kernel.name)
    if rows is None or name not in rows:
        return None
    coef = rows[name]
    f = features(step, graph)
    return int(round(sum(coef.get(k, 0.0) * v for k, v in f.items())))


def step_estimates(model) -> list[int | None]:
    """Per step of a compiled model, on its target's core."""
    core = core_of(model.target.name)
    if core is None:
        return [None] * len(model.steps)
    return [estimate_step(s, model.graph, core) for s in model.steps]


@dataclass(frozen=True)
class Estimate:
    core: str  # the measured core the coefficients come from
    instructions: int  # the whole model
    per_step: tuple[int, ...]
    complete: bool  # every step had a row in the table

    def latency_s(self, clock_hz: int) -> float:
        return self.instructions * CYCLES_PER_INSTRUCTION / clock_hz


def estimate(model) -> Estimate | None:
    """The model's instructions on its target's core, None where no core's table applies."""
    core = core_of(model.target.name)
    if core is None:
        return None
    per = [estimate_step(s, model.graph, core) for s in model.steps]
    return Estimate(core=core, instructions=sum(p or 0 for p in per),
                    per_step=tuple(p or 0 for p in per), complete=all(p is not None for p in per))


def fit_nnls(rows: list[list[float]], targets: list[float], iterations: int = 2000) -> list[float]:
    """Non-negative least squares of relative error (rows scaled by 1/target): Lawson and
    Hanson's active-set method, enough for a dozen features."""
    import numpy as np

    a = np.asarray(rows, float) / np.asarray(targets, float)[:, None]
    b = np.ones(len(targets))
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)  # columns of similar size
    a = a / scale
    n = a.shape[1]
    passive = np.zeros(n, bool)
    x = np.zeros(n)
    for _ in range(iterations):
        w = a.T @ (b - a @ x)
        if passive.all() or (w[~passive] <= 1e-10).all():
            break
        j = np.argmax(np.where(passive, -np.inf, w))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
    return (x / scale).tolist()

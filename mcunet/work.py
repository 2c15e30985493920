"""What a schedule costs in instructions, roughly: the planner compares layer by layer with
patch-based and streamed stages by the extra work they add (`--max-overhead`), which is not
just the recomputed MACs: a kernel called on a patch pays its set-up again, and the kernel a
layer gets can change (a patch's depthwise layers take the plane kernel, say, where the whole
layer took the generic one).

Each kernel call is counted as `per_mac * MACs + per_out * output values + per_in * input
values + per_channel * output channels + CALL` instructions, with the coefficients of its
kernel fitted (non-negative least squares) to per-layer instruction counts on the emulated
Cortex-M4 (mps2-an386, QEMU, exact counts) of eight benchmark models, layer by layer and
with stages (MBConv networks, MobileNetV2-0.35, vww, a ResNet; scripts/bench_stages.py
measures the same totals). The fit puts each model's overhead within about three points of
the measured one; the selection counts the stages' extra work with a MARGIN on top, so that
what it allows stays within the bound. Kernels not in the table (the portable ones the host
uses, pooling, elementwise) get DEFAULT.
"""
from __future__ import annotations

from typing import Sequence

from .layers import Windowed
from .step import Step

# kernel name -> (per MAC, per output value, per input value, per output channel and call)
KERNEL_COSTS: dict[str, tuple[float, float, float, float]] = {
    "conv2d_s8_dsp": (1.36, 11.7, 10.5, 0.0),
    "conv2d_s8_dsp_lean": (1.36, 11.7, 10.5, 0.0),
    "depthwise_conv_s8_dsp": (3.77, 7.75, 0.94, 40.0),
    "depthwise_conv_s8_dsp_lean": (3.77, 7.75, 0.94, 40.0),
    "depthwise_conv_inplace_s8_dsp": (2.37, 0.0, 6.9, 144.0),
    "depthwise_conv_s8": (12.1, 56.0, 0.0, 0.0),
    # Not in the fit (the M4 takes the DSP one): as the other portable depthwise, plus the copy.
    "depthwise_conv_inplace_s8": (12.1, 56.0, 1.0, 0.0),
    "fully_connected_s8_dsp": (2.21, 471.0, 0.0, 0.0),
    "average_pool_s8": (0.0, 14.3, 3.8, 14.3),
}
DEFAULT = (4.0, 12.0, 2.0, 20.0)
CALL = 60  # a call's own instructions (arguments, prologue, epilogue)
MARGIN = 1.25  # the selection counts a stage's extra work this much larger than the model


def cost(kernel: str, macs: float, out: float, inp: float, channels: float,
         calls: float = 1) -> float:
    """Estimated instructions of `calls` calls of a kernel that together do `macs` MACs and
    write `out` values from `inp` input values, with `channels` output channels each."""
    per_mac, per_out, per_in, per_channel = KERNEL_COSTS.get(kernel, DEFAULT)
    return per_mac * macs + per_out * out + per_in * inp + (per_channel * channels + CALL) * calls


def step_work(step: Step) -> float:
    """Estimated instructions of one kernel call (0 for a view)."""
    if step.kernel is None:
        return 0.0
    layer = step.layer
    if isinstance(layer, Windowed):
        w = layer.window
        out, inp, channels = w.oh * w.ow * w.oc, w.ih * w.iw * w.ic, w.oc
    else:
        size = getattr(getattr(layer, "shape", None), "size", None) or getattr(layer, "size", 0)
        out, inp, channels = size, size, 0
    return cost(step.kernel.name, step.macs, out, inp, channels)


def work(steps: Sequence[Step]) -> float:
    return sum(step_work(s) for s in steps)

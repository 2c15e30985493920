"""Kernel variants for the target core: on ARMv7E-M (Cortex-M4/M7) the hot kernels switch to
DSP versions built on SMLAD/SXTB16 (templates/kernels/*_dsp.c.j2). They take the same
arguments as the portable kernels (plus scratch where they need it), honour the same row
strides and overlap contract (STREAM_DEFAULTS in codegen/step.py), and compute the same
integers, so they are bit-exact too; on the host they compile against plain-C versions of
the instructions."""
from __future__ import annotations

from .step import ScratchArg

CONV = "conv2d_s8.c.j2"
CONV_SMALL_K = 256  # windows up to this many values are computed four pixels at a time


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


def choose_variants(steps: list, dsp: bool) -> None:
    """Swap each step's kernel for its DSP variant where one applies (in place)."""
    if not dsp:
        return
    for step in steps:
        p = step.params
        if step.kernel == CONV:
            # P pixels' windows as int16 (P x K x 2 bytes of scratch): three or four pixels
            # share each weight load while the windows stay small, two beyond.
            k = p["kh"] * p["kw"] * p["ic"]
            pixels = _pixels_per_block(p["oh"] * p["ow"]) if k <= CONV_SMALL_K else 2
            step.kernel = "conv2d_s8_dsp.c.j2"
            step.params = dict(p, out_block=pixels, P=pixels)
            step.args = list(step.args) + [ScratchArg("int16_t")]
            step.scratch_bytes = _align4(2 * pixels * k)
        elif (step.kernel == "depthwise_conv_s8.c.j2" and p["depth_multiplier"] == 1
              and p["ic"] % 4 == 0):
            # A pixel's outputs are staged (ic bytes) until its window was read.
            step.kernel = "depthwise_conv_s8_dsp.c.j2"
            step.args = list(step.args) + [ScratchArg("int8_t")]
            step.scratch_bytes = _align4(p["ic"])
        elif step.kernel == "fully_connected_s8.c.j2":
            step.kernel = "fully_connected_s8_dsp.c.j2"  # same arguments, no scratch
        elif step.kernel == "depthwise_conv_inplace_s8.c.j2" and (p["dh"], p["dw"]) == (1, 1):
            # The plane with its padding, tall and wide enough for the whole input and for the
            # last 4-byte loads: a 3x3 stride-1 kernel reads 4 columns for 2 outputs, the
            # others read each kernel row in groups of 4 taps.
            ph = max((p["oh"] - 1) * p["sh"] + p["kh"], p["ih"] + p["pad_top"])
            last = p["ow"] + 3 if _is_3x3_s1(p) else \
                (p["ow"] - 1) * p["sw"] + 4 * ((p["kw"] + 3) // 4)
            pw = max(last, p["iw"] + p["pad_left"])
            step.kernel = "depthwise_conv_inplace_s8_dsp.c.j2"
            step.params = dict(p, plane_h=ph, plane_w=pw)
            step.scratch_bytes = _align4(ph * pw)


def _pixels_per_block(npix: int) -> int:
    """4 or 3 pixels a block, whichever runs fewer instructions for npix pixels: a step of
    the inner loop costs about 6 + 6P instructions, and a partial last block costs as much as
    a whole one (a 3x3 output: three blocks of 3 rather than three of 4)."""
    return min((4, 3), key=lambda b: -(-npix // b) * (6 + 6 * b))


def _is_3x3_s1(p: dict) -> bool:
    """The kernel whose neighbouring outputs share their loads (two per 4-byte load)."""
    return (p["kh"], p["kw"], p["sh"], p["sw"]) == (3, 3, 1, 1)

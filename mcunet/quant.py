"""TFLite's fixed-point quantisation arithmetic, computed at compile time.

These functions reproduce what TFLite's kernels compute in Prepare (in the same float
and double precision), so the constants baked into the generated C equal the ones the
reference kernels use at run time. ``requantize`` mirrors the C helper of the same
name in templates/mcunet_common.h.j2 and is used by tests.

The facts behind them (which precision each Prepare uses, double rounding, FULLY_CONNECTED's
double-precision reference path) are collected in docs/arithmetic.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def round_half_away(x: float) -> int:
    """C's round(): halves go away from zero (Python's round() goes to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def double_parts(value: float) -> tuple[int, int]:
    """(mantissa, shift) with value = mantissa * 2^-shift exactly, the double's significand
    at the top of 64 bits (2^63 <= mantissa < 2^64; (0, 0) for zero): the form
    mcunet_round_scaled takes."""
    if value == 0:
        return 0, 0
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a scale must be finite and positive, not {value!r}")
    fraction, exponent = math.frexp(value)  # fraction in [0.5, 1): 53 bits
    return int(fraction * (1 << 53)) << 11, 64 - exponent


def round_scaled(acc: int, mantissa: int, shift: int) -> int:
    """round_half_away(acc * scale rounded to a double), INT32_MIN where that leaves int32
    (as the conversion does on TFLite's x86-64 build): what mcunet_round_scaled computes
    (the reference for its tests)."""
    from fractions import Fraction

    x = float(Fraction(acc * mantissa, 1) / Fraction(2) ** shift)  # one rounding, ties to even
    r = math.floor(abs(Fraction(x)) + Fraction(1, 2))
    r = int(math.copysign(r, x)) if r else 0
    return r if -(1 << 31) <= r < (1 << 31) else -(1 << 31)


# Where the output of a rescale still matters: an int8 output is clamp(round + offset) with
# the offset in [-128, 127], so a rounded value of magnitude NEAR_RANGE or more clamps alike
# whether it is exact or one off.
NEAR_RANGE = 1 << 10


@dataclass(frozen=True)
class NearRescale:
    """The fast form of round_scaled for a layer's scales, what mcunet_round_scaled_near takes:
    acc * k[u] (32 x 32 -> 64 bits) approximates acc * scale[u] * 2^32; adding half rounds it
    to an integer (the high word) and leaves g, the fraction of the sum (the low word), which
    says where that rounding could differ from the exact one: within `window` of a half
    (g + window < 2 * window, unsigned) the exact mcunet_round_scaled decides. Elsewhere the
    fast integer equals round_scaled's wherever that has magnitude below NEAR_RANGE, and is
    off by at most one beyond (where the int8 clamp hides it)."""
    window: int           # in g units (2^-32 of the result); below 2^30
    k: tuple[int, ...]    # per unit (or one): round(scale * 2^32), 1 .. 2^30

    def words(self) -> tuple[int, ...]:
        """The kernels' `near` argument: the window, then each k."""
        return (self.window,) + self.k


def near_rescale(scales: list[float]) -> NearRescale | None:
    """NearRescale for these (double) scales, or None where the fast form does not hold: a
    scale of 2^-2 or more (the product could leave int32 or round far off) or one so small
    (below about 2^-21) that k's precision would make the window wide.

    The window bounds |fast - exact| for results below NEAR_RANGE + 1 in magnitude, in exact
    rationals: k's error (|k - scale 2^32| / 2^32 per unit of acc, with |acc| at most
    (NEAR_RANGE + 1) (1 + 2^-52) / scale), plus the double's own rounding of the product
    (relative 2^-53), plus one g unit for the truncation and one of margin."""
    from fractions import Fraction

    if not scales or any(not (0 < s < 0.25) for s in scales):
        return None
    bound = Fraction(NEAR_RANGE + 1) * (1 + Fraction(1, 1 << 52))
    ks, error = [], Fraction(0)
    for s in scales:
        exact = Fraction(s) * (1 << 32)
        k = round(exact)
        if k == 0:
            return None
        ks.append(int(k))
        error = max(error, bound / Fraction(s) * abs(k - exact) / (1 << 32))
    error += bound / (1 << 53)
    window = math.ceil(error * (1 << 32)) + 2
    if window >= 1 << 30:
        return None
    return NearRescale(window, tuple(ks))


def round_scaled_near(acc: int, k: int, window: int, mantissa: int, shift: int) -> int:
    """What mcunet_round_scaled_near computes (the model its tests check): the fast rounding,
    or round_scaled within the window."""
    q = acc * k + (1 << 31)
    g = q & 0xFFFFFFFF
    if (g + window) % (1 << 32) < 2 * window:
        return round_scaled(acc, mantissa, shift)
    return q >> 32


def quantize_multiplier(real: float) -> tuple[int, int]:
    """A positive real multiplier as (q31 multiplier, power-of-two shift), like TFLite's
    QuantizeMultiplier: real ~= multiplier * 2**(shift - 31)."""
    if real == 0.0:
        return 0, 0
    if real < 0:
        raise ValueError(f"negative multiplier {real}")
    frac, shift = math.frexp(real)
    q = round_half_away(frac * (1 << 31))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out: the product is zero
        shift, q = 0, 0
    return int(q), int(shift)


def _f32(x) -> np.float32:
    return np.float32(x)


def quantize_value(f: float, scale: float, zero_point: int) -> int:
    """zero_point + round(f / scale) in float32, as TFLite's activation-range helper does."""
    q = _f32(f) / _f32(scale)
    return zero_point + round_half_away(float(q))


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = INT8_MIN, qmax: int = INT8_MAX) -> tuple[int, int]:
    """The clamp bounds of a fused activation on a quantised output
    (TFLite's CalculateActivationRangeQuantized)."""
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize_value(0.0, scale, zero_point)), qmax
    if activation == "RELU6":
        return (max(qmin, quantize_value(0.0, scale, zero_point)),
                min(qmax, quantize_value(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(qmin, quantize_value(-1.0, scale, zero_point)),
                min(qmax, quantize_value(1.0, scale, zero_point)))
    raise ValueError(f"fused activation {activation} is not supported on int8")


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(v) // (1 << 31)  # C division truncates toward zero
    return q if v >= 0 else -q


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def requantize(acc: int, multiplier: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier: acc * multiplier * 2**(shift - 31) with two
    roundings. Mirrors mcunet_requantize in C (acc * 2**left must fit in int32)."""
    left, right = max(shift, 0), max(-shift, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(acc << left, multiplier), right)


def conv_multipliers(input_scale: float, filter_scales: np.ndarray, output_scale: float,
                     channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) arrays of a conv, depthwise or fully connected
    layer: input_scale * filter_scale / output_scale in double, as TFLite's
    PopulateConvolutionQuantizationParams does."""
    scales = np.broadcast_to(np.asarray(filter_scales, dtype=np.float32).reshape(-1), (channels,)) \
        if np.size(filter_scales) == 1 else np.asarray(filter_scales, dtype=np.float32)
    mult = np.zeros(channels, dtype=np.int32)
    shift = np.zeros(channels, dtype=np.int32)
    for c in range(channels):
        real = float(input_scale) * float(scales[c]) / float(output_scale)
        mult[c], shift[c] = quantize_multiplier(real)
    return mult, shift

"""Compile-time quantisation arithmetic against its definitions."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from mcunet.quant import activation_range, quantize_multiplier, requantize, round_half_away


@given(st.floats(min_value=1e-9, max_value=1e3, allow_nan=False))
def test_quantize_multiplier_reconstructs_the_real_value(real):
    q, shift = quantize_multiplier(real)
    if q == 0:  # only when the value is too small to represent
        assert real < 2.0 ** -31
        return
    assert (1 << 30) <= q < (1 << 31)
    assert -31 <= shift <= 30
    assert math.isclose(q * 2.0 ** (shift - 31), real, rel_tol=2.0 ** -30)


def test_quantize_multiplier_rounds_up_to_the_next_power_of_two():
    # 1 - 2^-40 rounds to 2^31 in Q31, which must become 2^30 with the shift raised by one.
    q, shift = quantize_multiplier(1.0 - 2.0 ** -40)
    assert (q, shift) == (1 << 30, 1)


def test_round_half_away_from_zero():
    assert [round_half_away(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 0.49999)] == [1, 2, 3, -1, -3, 0]


@given(st.integers(-(1 << 24), 1 << 24), st.floats(1e-6, 0.99))
def test_requantize_is_within_rounding_of_the_exact_product(acc, real):
    q, shift = quantize_multiplier(real)
    exact = acc * q * 2.0 ** (shift - 31)
    # Two roundings (high multiply, then shift) stay within 3/4 LSB of the exact product.
    assert abs(requantize(acc, q, shift) - exact) <= 0.75


def test_requantize_ties_follow_gemmlowp():
    half = 1 << 30  # multiplier 0.5 with shift 0
    # The doubling high multiply rounds ties up (toward +inf), the shift rounds them away from 0.
    assert [requantize(x, half, 0) for x in (3, -3, 5, -5)] == [2, -1, 3, -2]
    assert [requantize(x, half, -1) for x in (6, -6, 2, -2)] == [2, -2, 1, -1]


def test_activation_ranges():
    assert activation_range("NONE", 0.1, 3) == (-128, 127)
    assert activation_range("RELU", 0.1, -100) == (-100, 127)
    assert activation_range("RELU6", 0.05, -128) == (-128, -8)  # 6 / 0.05 = 120
    assert activation_range("RELU6", 0.01, -128) == (-128, 127)  # 600 steps saturate
    with pytest.raises(ValueError):
        activation_range("TANH", 0.1, 0)


def test_activation_range_divides_in_float32():
    # 6 / 1.0909091234207153 is 5.4999998 in double but exactly 5.5 in float32; TFLite divides
    # in float32, so the RELU6 bound is zero point + 6, not + 5.
    lo, hi = activation_range("RELU6", 1.0909091234207153, -128)
    assert (lo, hi) == (-128, -122)

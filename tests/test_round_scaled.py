"""mcunet_round_scaled, the integer FULLY_CONNECTED rescale: for every int32 accumulator and
double scale it gives round((double)acc * scale) exactly as TFLite's reference computes it
(the double product, then round() with halves away from zero), near ties included; C under
UBSan against Python's IEEE double arithmetic. Its fast form, mcunet_round_scaled_near, gives
the same int8 output (clamp(r + offset)) for every offset and clamp."""
from __future__ import annotations

import math
import subprocess
from fractions import Fraction

import numpy as np

from mcunet.codegen.library import environment
from mcunet.quant import NEAR_RANGE, double_parts, near_rescale, round_scaled, round_scaled_near

def reference(acc: int, scale: float) -> int:
    """TFLite's path in Python floats (IEEE double multiply), rounded exactly; INT32_MIN where
    the result leaves int32 (the conversion on TFLite's x86-64 build)."""
    x = float(acc) * scale
    r = math.floor(abs(Fraction(x)) + Fraction(1, 2))
    r = int(math.copysign(r, x)) if r else 0
    return r if -(1 << 31) <= r < (1 << 31) else -(1 << 31)


def cases(seed: int = 0, n: int = 6000) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    result = [(0, 0.5), (1, 0.0), (-(1 << 31), 1e-9), ((1 << 31) - 1, 1e-9), (3, 0.5), (-3, 0.5),
              (5, 0.1), (-(1 << 31), 2.0 ** -31), ((1 << 31) - 1, 2.0 ** -31), (1, 2.0 ** -54),
              (1, 2.0 ** -53), (3, 2.0 ** -55), (100, 1e10), (-100, 1e10),
              ((1 << 31) - 1, 1e-300), (-(1 << 31), 5e-324), (1, 1e300), (-1, 1.7e308),
              (1 << 24, 1.0), ((1 << 24) + 1, 1.0), (-(1 << 24) - 1, 1.0), (7, 2.0 ** -3),
              ((1 << 31) - 1, 1.0), (-(1 << 31), 1.0), ((1 << 31) - 1, 0.9999999999), (3, 1e9),
              (-(1 << 31), 0.5), ((1 << 30) + 1, 2.0), (-(1 << 30), 2.0), (-(1 << 30) - 1, 2.0),
              ((1 << 31) - 1, 1.0000000002), (1 << 20, 2047.9999995)]
    for _ in range(n):
        acc = int(rng.integers(-(1 << 31), 1 << 31))
        scale = float(10.0 ** rng.uniform(-12, 2))
        result.append((acc, scale))
    for _ in range(n):  # products a hair from a half-integer: where the double's rounding matters
        acc = int(rng.integers(1, 1 << 31)) * int(rng.choice([1, -1]))
        target = int(rng.integers(0, 300)) + 0.5
        scale = float(np.nextafter(target / abs(acc), rng.choice([0.0, 1.0]) * 2))
        for step in range(int(rng.integers(0, 3))):
            scale = float(np.nextafter(scale, 1.0 if step % 2 else 0.0))
        result.append((acc, scale))
    for _ in range(n // 4):  # powers of two and simple ratios: exact ties
        acc = int(rng.integers(-(1 << 20), 1 << 20))
        result.append((acc, float(Fraction(int(rng.integers(1, 8)), 1 << int(rng.integers(1, 12))))))
    return result


def run_under_ubsan(folder) -> list[int]:
    """Compile folder/t.c (with the library's mcunet_common.h beside it) under UBSan, run it
    and return the integers it prints; a sanitizer report fails the test."""
    exe = folder / "t"
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=undefined",
                    "-fno-sanitize-recover=all", str(folder / "t.c"), "-o", str(exe)],
                   check=True, capture_output=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    assert run.stderr == ""
    return [int(v) for v in run.stdout.split()]


def test_python_model_is_the_double_arithmetic():
    for acc, scale in cases(1, 2000):
        assert round_scaled(acc, *double_parts(scale)) == reference(acc, scale), (acc, scale)


def test_c_matches_tflite_double_rounding(tmp_path):
    all_cases = cases(0)
    header = environment().get_template("mcunet_common.h.j2").render(
        model_name="t", version="t", arena_bytes=4, flash_bytes=0, macs=0, inputs=[], outputs=[])
    (tmp_path / "mcunet_common.h").write_text(header)
    rows = ",\n".join(f"{{{acc}, {m}ULL, {e}}}" for acc, s in all_cases
                      for m, e in [double_parts(s)])
    (tmp_path / "t.c").write_text(f"""#include <stdio.h>
#include "mcunet_common.h"
static const struct {{ long long acc; unsigned long long m; int e; }} c[] = {{ {rows} }};
int main(void) {{
    for (unsigned i = 0; i < sizeof c / sizeof c[0]; ++i)
        printf("%ld\\n", (long)mcunet_round_scaled((int32_t)c[i].acc, c[i].m, c[i].e));
    return 0;
}}
""")
    got = run_under_ubsan(tmp_path)
    expected = [reference(acc, s) for acc, s in all_cases]
    bad = [(c, g, e) for c, g, e in zip(all_cases, got, expected) if g != e]
    assert not bad, f"{len(bad)} of {len(all_cases)} differ, e.g. {bad[:3]}"


def near_cases(seed: int = 0, n: int = 3000) -> list[tuple[int, float]]:
    """cases() where the fast form applies, plus accumulators whose result lands on or a hair
    from a half in the range that matters (|result| < NEAR_RANGE), and at the ends of int32."""
    rng = np.random.default_rng(seed)
    result = [(a, s) for a, s in cases(seed, n) if near_rescale([s])]
    for _ in range(n):
        scale = float(10.0 ** rng.uniform(-6.3, -0.61))
        half = int(rng.integers(-NEAR_RANGE - 4, NEAR_RANGE + 4)) + 0.5
        acc = int(half / scale) + int(rng.integers(-2, 3))
        result.append((max(-(1 << 31), min((1 << 31) - 1, acc)), scale))
        result.append((int(rng.choice([-(1 << 31), (1 << 31) - 1])), scale))
    return result


def clamped(r: int, offset: int) -> int:
    """The kernels' int8 output of rescaled r (wrapping add, as mcunet_wrap_add)."""
    v = (r + offset + (1 << 31)) % (1 << 32) - (1 << 31)
    return max(-128, min(127, v))


def test_near_rescale_holds_where_it_claims():
    assert near_rescale([0.25]) is None and near_rescale([1e-9]) is None and near_rescale([]) is None
    spread = near_rescale([0.1, 1e-5])  # the smaller scale's k is the less precise
    assert spread is not None and spread.window > near_rescale([0.1]).window
    for acc, scale in near_cases(2, 1500):
        near = near_rescale([scale])
        m, e = double_parts(scale)
        exact = reference(acc, scale)
        fast = round_scaled_near(acc, near.k[0], near.window, m, e)
        if abs(exact) < NEAR_RANGE:
            assert fast == exact, (acc, scale)
        else:
            assert abs(fast - exact) <= 1 and all(clamped(fast, o) == clamped(exact, o)
                                                  for o in (-128, 0, 127)), (acc, scale)


def test_c_near_matches_tflite_on_int8_outputs(tmp_path):
    all_cases = near_cases(0)
    offsets = (-128, -5, 0, 77, 127)
    header = environment().get_template("mcunet_common.h.j2").render(
        model_name="t", version="t", arena_bytes=4, flash_bytes=0, macs=0, inputs=[], outputs=[])
    (tmp_path / "mcunet_common.h").write_text(header)
    rows = ",\n".join(f"{{{acc}, {near.k[0]}, {near.window}u, {m}ULL, {e}}}" for acc, s in all_cases
                      for near, (m, e) in [(near_rescale([s]), double_parts(s))])
    (tmp_path / "t.c").write_text(f"""#include <stdio.h>
#include "mcunet_common.h"
static const struct {{ long long acc; int32_t k; uint32_t w; unsigned long long m; int e; }} c[] = {{ {rows} }};
static const int offsets[] = {{ {", ".join(map(str, offsets))} }};
int main(void) {{
    for (unsigned i = 0; i < sizeof c / sizeof c[0]; ++i)
        for (unsigned j = 0; j < sizeof offsets / sizeof offsets[0]; ++j) {{
            const int32_t r = mcunet_round_scaled_near((int32_t)c[i].acc, c[i].k, c[i].w, c[i].m, c[i].e);
            printf("%d\\n", (int)mcunet_clamp_s8(mcunet_wrap_add(r, offsets[j]), -128, 127));
        }}
    return 0;
}}
""")
    got = run_under_ubsan(tmp_path)
    expected = [clamped(reference(acc, s), o) for acc, s in all_cases for o in offsets]
    assert len(got) == len(expected)
    bad = [(all_cases[i // len(offsets)], g, e) for i, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert not bad, f"{len(bad)} of {len(expected)} differ, e.g. {bad[:3]}"

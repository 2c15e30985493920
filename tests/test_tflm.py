"""--arithmetic tflm: the generated C is bit-exact with TF Lite Micro's kernels (tflite-micro's
Python interpreter) on every output byte, on the portable and the DSP kernels (the DSP ones
compiled on the host against the plain-C versions of their instructions).

The ops whose arithmetic differs from TFLite's reference kernels (docs/arithmetic.md) each have
a test here, and each pins a case where the two arithmetics give different bytes, so that
the option is seen to matter: FULLY_CONNECTED (fixed-point rescale), RELU6 (a clamp of the
raw input), RELU and MUL (their multipliers divided in double)."""
from __future__ import annotations

import math
import subprocess
import sys
import unittest.mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mcunet.cli import main
from mcunet.codegen.library import LibraryOptions
from mcunet.compiler import compile_model
from mcunet.errors import McunetError
from mcunet.reference import reference_outputs, tflm_outputs

from .conftest import MLPERF, mlperf_model
from .modelgen import ModelBuilder
from .opcheck import assert_bit_exact
from .test_ops_activation import every_int8, mul_pairs_model, unary_model

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
TFLM = {"arithmetic": "tflm"}


def f32(x: float) -> float:
    return float(np.float32(x))


def differs(data: bytes, inputs: list[np.ndarray]) -> int:
    """How many output values TF Lite Micro and TFLite's reference disagree on."""
    return sum(int(np.count_nonzero(a != b))
               for a, b in zip(tflm_outputs(data, inputs), reference_outputs(data, inputs)))


# --- FULLY_CONNECTED -------------------------------------------------------------------------

def fc_model(rng, rows: int, depth: int, units: int, per_channel: bool, in_s: float,
             in_zp: int, w_zp: int, gain: float, out_zp: int, act: str = "NONE",
             w_max: int = 127) -> bytes:
    """A FULLY_CONNECTED with weights in [-w_max, w_max] whose outputs mostly stay inside
    int8: the multiplier is about 1 / (gain w_max sqrt(depth)). Small weights give small
    right shifts, where the fixed-point rescale (two roundings) and the reference's one
    rounding of a double disagree most often (1 in 2^(shift + 1) values)."""
    m = ModelBuilder()
    x = m.input((1, rows, depth), "int8", scale=in_s, zero_point=in_zp)
    n = units if per_channel else 1
    scales = [f32(s) for s in rng.uniform(0.002, 0.05, n)]
    w = m.const(rng.integers(-w_max, w_max + 1, (units, depth)).astype(np.int8), scale=scales,
                zero_point=[0] * n if per_channel else [w_zp], quantized_dimension=0)
    spread = int(40 * w_max * math.sqrt(depth))  # about the accumulators' own spread
    b = m.const(rng.integers(-spread, spread + 1, units).astype(np.int32),
                scale=[f32(in_s * s) for s in scales], zero_point=[0] * n)
    out_s = f32(in_s * float(np.mean(scales)) * math.sqrt(depth) * w_max * gain)
    y = m.tensor((1, rows, units), "int8", scale=out_s, zero_point=out_zp)
    m.op("FULLY_CONNECTED", [x, w, b], [y], fused_activation=act, keep_num_dims=True)
    m.output(y)
    return m.build()


@given(rows=st.integers(1, 3), depth=st.integers(1, 70), units=st.integers(1, 17),
       per_channel=st.booleans(), in_s=st.floats(1e-3, 1.0), in_zp=st.integers(-128, 127),
       w_zp=st.sampled_from([0, 0, 3, -7]), gain=st.floats(0.3, 3.0),
       out_zp=st.integers(-128, 127), act=st.sampled_from(["NONE", "RELU", "RELU6"]),
       w_max=st.sampled_from([2, 5, 127]), seed=st.integers(0, 2**16))
@SETTINGS
def test_fully_connected(rows, depth, units, per_channel, in_s, in_zp, w_zp, gain, out_zp, act,
                         w_max, seed):
    data = fc_model(np.random.default_rng(seed), rows, depth, units, per_channel, f32(in_s),
                    in_zp, w_zp, gain, out_zp, act, w_max)
    assert_bit_exact(data, rows=16, seed=seed, **TFLM)


def test_fully_connected_differs_from_the_reference():
    """Pinned: TFLM and the reference disagree on this layer; each arithmetic matches its own."""
    data = fc_model(np.random.default_rng(4), 1, 64, 16, False, 0.05, 3, 0, 0.7371, -5, w_max=2)
    x = [np.random.default_rng(1).integers(-128, 128, (64, 1, 64)).astype(np.int8)]
    assert differs(data, x) > 0
    _, ours_tflm = assert_bit_exact(data, inputs=x, **TFLM)
    _, ours_ref = assert_bit_exact(data, inputs=x)
    assert not np.array_equal(ours_tflm[0], ours_ref[0])


@pytest.mark.parametrize("widened", [False, True], ids=["dsp", "dsp_col"])
@given(depth=st.integers(1, 70), units=st.integers(1, 17), per_channel=st.booleans(),
       w_zp=st.sampled_from([0, 5]), gain=st.floats(0.3, 3.0), seed=st.integers(0, 2**16))
@settings(SETTINGS, max_examples=6)
def test_fully_connected_dsp_variants(widened, depth, units, per_channel, w_zp, gain, seed):
    """Both DSP variants (fully_connected_s8_dsp_col widens the input row into scratch, the
    other per block) rescale as TFLM does; a lone FC layer is the arena's peak, so without the
    leaner choice the scratch variant is taken."""
    data = fc_model(np.random.default_rng(seed), 2, depth, units, per_channel, 0.02, -9, w_zp,
                    gain, 11, w_max=3)
    kernel = "fully_connected_s8_dsp_col" if widened else "fully_connected_s8_dsp"
    if widened:
        with unittest.mock.patch("mcunet.compiler.leaner_variant", lambda step: None):
            compiled, _ = assert_bit_exact(data, rows=16, seed=seed, target="cortex-m4", **TFLM)
    else:
        compiled, _ = assert_bit_exact(data, rows=16, seed=seed, target="cortex-m4", **TFLM)
    assert kernel in {s.kernel.name for s in compiled.steps if s.kernel}


def test_fully_connected_sanitized_extremes():
    """Extreme biases and a large multiplier (a left shift): the fixed-point rescale wraps and
    saturates as TFLM's does, in defined C (-fsanitize=address,undefined)."""
    m = ModelBuilder()
    x = m.input((1, 2), "int8", scale=1.0, zero_point=0)
    w = m.const(np.array([[127, 127], [-127, 1], [3, -3]], np.int8), scale=1.0, zero_point=0)
    b = m.const(np.array([(1 << 31) - 10, -(1 << 31) + 10, 1000], np.int32), scale=1.0,
                zero_point=0)
    for s, zp in ((0.5, 0), (1.0 / 3000, -5), (1e5, 7)):
        y = m.tensor((1, 3), "int8", scale=s, zero_point=zp)
        m.op("FULLY_CONNECTED", [x, w, b], [y])
        m.output(y)
    data = m.build()
    inputs = [np.array([[0, 0], [127, 127], [-128, -128], [5, -9]], np.int8)]
    for target in (None, "cortex-m4"):
        assert_bit_exact(data, inputs=inputs, sanitize=True, target=target, **TFLM)


# --- RELU6, RELU, MUL ------------------------------------------------------------------------

@pytest.mark.parametrize("in_s, in_zp, out_s, out_zp", [
    (0.103656, -2, 0.005349987, 29),   # other output quantisation: TFLM ignores it
    (0.05, 17, 0.05, 17),              # the same: both arithmetics agree
    (0.01, -128, 0.02, 3),             # six above 127: clamped
    (0.5, 100, 0.1, 0),
])
def test_relu6_clamps_the_raw_input(in_s, in_zp, out_s, out_zp):
    model = unary_model("RELU6", (1, 256), in_s, in_zp, out_s, out_zp)
    x = [every_int8((1, 256))]
    assert_bit_exact(model, inputs=x, **TFLM)
    if (in_s, in_zp) != (out_s, out_zp):
        assert differs(model, x) > 0


@pytest.mark.parametrize("in_s, in_zp, out_s, out_zp", [
    (0.98214656, -23, 0.010177685, -76),   # the float32 and the double quotient differ here
    (0.0010172733, -120, 0.002649087, 33),
    (0.02, 5, 0.03, -7),
])
def test_relu_divides_the_scales_in_double(in_s, in_zp, out_s, out_zp):
    model = unary_model("RELU", (1, 256), in_s, in_zp, out_s, out_zp)
    assert_bit_exact(model, inputs=[every_int8((1, 256))], **TFLM)


def test_relu_quotient_matters():
    model = unary_model("RELU", (1, 256), 0.98214656, -23, 0.010177685, -76)
    assert differs(model, [every_int8((1, 256))]) == 1


PAIRS = [np.arange(-128, 128, dtype=np.int8).reshape(1, 256, 1),
         np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 256)]


@pytest.mark.parametrize("s1, z1, s2, z2, so, zo", [
    (0.2622080445289612, -57, 0.008899308741092682, 50, 0.20218132436275482, 20),
    (0.002799722133204341, -118, 0.004374267999082804, -62, 0.001295842812396586, -116),
])
def test_mul_every_pair_with_the_double_scale_product(s1, z1, s2, z2, so, zo):
    """All 65536 pairs of int8 values: for these scales the multiplier of s1 * s2 / so in
    double (TFLM) and in float32 (the reference) requantise a product or two differently."""
    model = mul_pairs_model(s1, z1, s2, z2, so, zo)
    assert differs(model, PAIRS) > 0
    assert_bit_exact(model, inputs=PAIRS, **TFLM)


@given(s1=st.floats(1e-3, 1), s2=st.floats(1e-3, 1), gain=st.floats(0.05, 500),
       z1=st.integers(-128, 127), z2=st.integers(-128, 127), zo=st.integers(-128, 127),
       act=st.sampled_from(["NONE", "RELU", "RELU6"]), seed=st.integers(0, 2**16))
@settings(SETTINGS, max_examples=6)
def test_mul(s1, s2, gain, z1, z2, zo, act, seed):
    s1, s2 = f32(s1), f32(s2)
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    a = m.input((1, 4, 6), "int8", scale=s1, zero_point=z1)
    b = m.input((1, 1, 6), "int8", scale=s2, zero_point=z2)
    y = m.tensor((1, 4, 6), "int8", scale=f32(s1 * s2 * gain), zero_point=zo)
    m.op("MUL", [a, b], [y], fused_activation=act)
    m.output(y)
    x = [rng.integers(-128, 128, (8, 4, 6)).astype(np.int8),
         rng.integers(-128, 128, (8, 1, 6)).astype(np.int8)]
    assert_bit_exact(m.build(), inputs=x, **TFLM)


# --- the MLPerf Tiny models ------------------------------------------------------------------

@pytest.mark.parametrize("target", ["host", "cortex-m4"], ids=["portable", "dsp"])
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_models(name, target):
    """Every output byte of the four models equals TFLM's (ad01, all FULLY_CONNECTED, is the
    one where TFLM and the reference differ: about 30% of its outputs, by up to 3 LSB)."""
    patch = "auto" if name == "vww_96_int8.tflite" else "none"
    assert_bit_exact(mlperf_model(name), rows=12, seed=3, flags=None, patch=patch,
                     target=target, **TFLM)


def test_ad01_differs_from_the_reference():
    path = mlperf_model("ad01_int8.tflite")
    data = path.read_bytes()
    x = [np.random.default_rng(0).integers(-128, 128, (8, 640)).astype(np.int8)]
    assert differs(data, x) > 0.2 * x[0].size


# --- the option ------------------------------------------------------------------------------

def test_unknown_arithmetic_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(mlperf_model("ad01_int8.tflite")), "--arithmetic", "tflite", "--no-png"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "tflm" in err[0], err
    with pytest.raises(McunetError, match="--arithmetic 'micro' is not one of reference, tflm"):
        LibraryOptions(arithmetic="micro")


def test_plan_json_and_report_name_the_arithmetic(capsys, tmp_path):
    import json

    path = str(mlperf_model("ad01_int8.tflite"))
    for arithmetic in ("reference", "tflm"):
        args = ["plan", path, "--json", "--no-png"]
        main(args + (["--arithmetic", arithmetic] if arithmetic != "reference" else []))
        assert json.loads(capsys.readouterr().out)["arithmetic"] == arithmetic
    out = tmp_path / "lib"
    main(["compile", path, "--out", str(out), "--arithmetic", "tflm"])
    text = capsys.readouterr().out
    assert "arithmetic:             tflm (bit-exact with TF Lite Micro's kernels)" in text
    assert "tflm" in (out / "report.md").read_text()
    assert "TF Lite Micro" in (out / "report.html").read_text()
    assert "mcunet_requantize(acc, multiplier" in "".join(
        p.read_text() for p in out.rglob("*.c"))


def test_simulate_check_against_tflm(tmp_path):
    path = str(mlperf_model("ad01_int8.tflite"))
    run = [sys.executable, "-m", "mcunet", "simulate", path, "--random", "20", "--check"]
    tflm = subprocess.run(run + ["--arithmetic", "tflm"], capture_output=True, text=True)
    assert tflm.returncode == 0, tflm.stderr
    assert "identical to TF Lite Micro's kernels" in tflm.stdout
    ref = subprocess.run(run, capture_output=True, text=True)
    assert ref.returncode == 0 and "identical to TFLite's reference kernels" in ref.stdout


def test_check_names_the_first_layer_that_differs_from_tflm():
    """The reference arithmetic's code checked against TFLM: the per-layer search runs TFLM
    with every tensor preserved and finds ad01's first FC layer that rounds differently."""
    import dataclasses

    from mcunet.check import check_against_reference
    from mcunet.host import build_host, random_inputs

    path = mlperf_model("ad01_int8.tflite")
    compiled = compile_model(path, patch="none")
    x = random_inputs(compiled.graph, 4, 0)
    ours, _ = build_host(compiled).run(x)
    as_tflm = dataclasses.replace(compiled, options=LibraryOptions(arithmetic="tflm"))
    result = check_against_reference(path, as_tflm, x, ours)
    assert not result.exact and "TF Lite Micro" in result.summary()
    assert result.first_layer is not None and result.first_layer.op == "FULLY_CONNECTED"
    assert result.first_layer.max_abs_diff == 1


@pytest.mark.slow
def test_ad01_on_the_emulated_cortex_m4_matches_tflm(tmp_path):
    """The real SMLAD/SXTB16 under QEMU (mps2-an386), --arithmetic tflm, checked with TFLM."""
    path = str(mlperf_model("ad01_int8.tflite"))
    proc = subprocess.run([sys.executable, "-m", "mcunet", "run", path, "--board", "mps2-an386",
                           "--random", "4", "--check", "--arithmetic", "tflm"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identical to TF Lite Micro's kernels" in proc.stdout

"""The cost model: features from kernel records and shapes, the fit, estimates in plan and
in the search's latency budget, and per-layer measurements from a profile run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import mcunet
from mcunet.compiler import compile_graph, compile_model
from mcunet.costmodel import estimate, features, fit_nnls, step_estimates
from mcunet.costmodel_table import TABLE

from .conftest import mlperf_model, run_cli

needs_tools = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (scripts/setup.sh installs them)")


def test_fit_recovers_non_negative_coefficients():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 100, (40, 4))
    truth = np.array([3.0, 0.0, 12.5, 0.25])
    coef = fit_nnls(x.tolist(), (x @ truth).tolist())
    assert np.allclose(coef, truth, rtol=1e-6, atol=1e-9)
    # A negative fit is clipped to the best non-negative one.
    y = x @ np.array([5.0, -2.0, 0, 0]) + 300
    assert min(fit_nnls(x.tolist(), y.tolist())) >= 0


def test_features_follow_the_kernels_loops():
    m = compile_model(mlperf_model("kws_ref_model.tflite"), target="cortex-m4", patch="none")
    first = m.steps[0]  # 10x4 conv, 1 -> 64 channels, 25x5 output, DSP kernel
    f = features(first, m.graph)
    assert f["macs"] == first.macs == 320_000 and f["out"] == 25 * 5 * 64
    assert f["pixels"] == 125 and f["im2col"] == 125 * 10 * 4 * 1
    assert f["macs_per_block"] == first.macs / first.kernel.constants(first.layer)["P"]
    assert all(v == 0 for v in features(m.steps[0], m.graph).values() if v is None)


def test_estimates_are_per_step_sums_and_only_for_measured_cores():
    path = mlperf_model("kws_ref_model.tflite")
    m4 = compile_model(path, target="cortex-m4")
    per = step_estimates(m4)
    cost = estimate(m4)
    assert cost is not None and cost.core == "cortex-m4"
    assert cost.instructions == sum(per) > m4.macs  # at least an instruction per MAC
    assert estimate(compile_model(path, target="cortex-m33")).core == "cortex-m33"  # mps2-an505
    assert estimate(compile_model(path, target="cortex-m55")).core == "cortex-m7"  # stand-in
    assert estimate(compile_model(path)) is None  # the host: no core
    assert estimate(compile_model(path, target="cortex-m0plus")) is None  # not measured


def test_plan_shows_estimates_and_latency_at_the_clock():
    model = mlperf_model("kws_ref_model.tflite")
    r = run_cli("plan", model, "--board", "nucleo-f411re", "--json", "--no-png")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    cost = estimate(mcunet.compile(model, board="nucleo-f411re"))
    assert plan["estimated_instructions"] == cost.instructions
    assert plan["estimated_latency_ms"] == round(cost.instructions / 100e6 * 1e3, 4)
    assert sum(row["estimated_instructions"] for row in plan["layers"]) == cost.instructions
    text = run_cli("plan", model, "--board", "nucleo-f411re", "--no-png").stdout
    assert "est. insn" in text and f"{cost.instructions:,} instructions" in text
    assert "at 100 MHz" in text


def test_plan_on_the_m33_board_has_its_stack_bound_and_its_own_estimate():
    """mps2-an505: the stack bound on the Cortex-M33 and the estimate from the coefficients
    fitted on it, at the AN505's 20 MHz."""
    model = mlperf_model("kws_ref_model.tflite")
    r = run_cli("plan", model, "--board", "mps2-an505", "--json", "--no-png")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["stack_bytes"] > 0
    assert plan["peak_sram_bytes"] == plan["arena_bytes"] + plan["stack_bytes"]
    cost = estimate(mcunet.compile(model, board="mps2-an505"))
    assert cost.core == "cortex-m33" and cost.complete
    assert plan["estimated_instructions"] == cost.instructions
    assert plan["estimated_latency_ms"] == round(cost.instructions / 20e6 * 1e3, 4)
    text = run_cli("plan", model, "--board", "mps2-an505", "--no-png").stdout
    assert "fitted on mps2-an505" in text and "at 20 MHz" in text


def test_search_latency_uses_the_cost_model():
    from mcunet.budget import Budget
    from mcunet.search.budget import measure
    from mcunet.search.graph import build_graph
    from mcunet.search.space import default_space
    from mcunet.target import TARGETS

    space = default_space()
    arch = space.smallest()
    cost = measure(space, arch, target=TARGETS["cortex-m4"])
    expected = estimate(compile_graph(build_graph(space, arch), patch="none",
                                      target="cortex-m4")).instructions
    assert cost.instructions == expected
    budget = Budget(32768, 131072, latency_ms=1.0, clock_hz=100_000_000)
    assert cost.latency_ms(budget) == pytest.approx(expected / 1e5)
    assert cost.fits(budget) == (expected / 1e5 <= 1.0)


@needs_tools
def test_run_json_has_each_layers_instructions_and_ram(tmp_path):
    model = mlperf_model("kws_ref_model.tflite")
    x = np.random.default_rng(1).integers(-128, 128, (1, 49, 10, 1)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("run", model, "--board", "mps2-an386", "--input", tmp_path / "x.npy", "--json",
                tmp_path / "r.json", "--profile")
    assert r.returncode == 0, r.stderr
    assert "meas/est" in r.stdout  # the per-layer table
    report = json.loads((tmp_path / "r.json").read_text())
    layers = report["layers"]
    compiled = mcunet.compile(model, board="mps2-an386")
    assert [row["index"] for row in layers] == [s.op.index for s in compiled.steps if s.kernel]
    # The layers add up to the inference: only the trace calls' own work is left out.
    assert sum(row["instructions"] for row in layers) <= report["instructions"]
    assert sum(row["instructions"] for row in layers) > 0.999 * report["instructions"]
    for row in layers:
        assert 0 < row["stack_bytes_measured"] <= report["stack_bytes"]
        assert row["ram_bytes_measured"] <= report["ram_bytes_measured"]
        assert row["estimated"] is not None
    # The whole model within 25% here (scripts/bench_costmodel.py holds it to 10%).
    estimated = sum(row["estimated"] for row in layers)
    assert abs(estimated / report["instructions"] - 1) < 0.25
    assert report["flash_library_bytes_measured"] > compiled.flash_bytes

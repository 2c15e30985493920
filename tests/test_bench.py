"""scripts/bench_compile.py measures real figures: one model, a few rows."""
import importlib.util
import json

import pytest

from .conftest import ROOT, mlperf_model, run_cli


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_compile", ROOT / "scripts" / "bench_compile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_measures_kws_against_plan_and_tflm():
    bench = _load_bench()
    path = mlperf_model("kws_ref_model.tflite")
    r = bench.measure_model(path, rows=10, repeats=2)

    plan = run_cli("plan", path, "--json", "--no-png")
    assert plan.returncode == 0, plan.stderr
    plan = json.loads(plan.stdout)
    assert r["arena_bytes"] == plan["peak_sram_bytes"]
    assert r["weights_bytes"] == plan["flash_bytes"]

    assert "tflm_error" not in r, r["notes"]
    assert r["tflm_head_bytes"] > 0
    assert r["tflm_total_bytes"] >= r["tflm_head_bytes"]
    assert r["ratio_arena_total"] == pytest.approx(r["arena_bytes"] / r["tflm_total_bytes"])
    # How far TFLM's outputs are from ours is reported, not asserted: TFLM is the memory
    # baseline, TFLite's reference kernels are the arithmetic one (tests/test_mlperf.py).
    assert 0 <= r["rows_differing_from_tflm"] <= r["rows"]

    assert 100 < r["code_host_bytes"] < r["weights_bytes"]  # code only, weights are separate
    assert r["compile_s"] > 0 and r["ours_us"] > 0 and r["tflm_us"] > 0
    assert r["speedup_vs_tflm"] == pytest.approx(r["tflm_us"] / r["ours_us"])

    text = bench.table([r])
    assert "kws_ref_model.tflite" in text and str(r["arena_bytes"]) in text


def test_bench_memory_rows_match_the_planner():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "scripts" / "bench_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from mcunet.compiler import compile_model
    path = mlperf_model("vww_96_int8.tflite")
    r = bench.measure(path)
    assert "tflm_error" not in r, r
    assert r["none_bytes"] == compile_model(path, patch="none").peak_sram_bytes
    auto = compile_model(path)
    assert r["auto_bytes"] == auto.peak_sram_bytes and r["patch"] == auto.schedule
    assert r["overhead"] == auto.overhead <= 0.15
    assert r["tflm_total_bytes"] > r["tflm_head_bytes"] > 0
    assert r["ratio_auto"] == pytest.approx(r["auto_bytes"] / r["tflm_total_bytes"])
    assert r["bound_auto_bytes"] <= r["auto_bytes"]
    text = bench.table([r])
    assert "vww_96_int8" in text and f"{r['auto_bytes']:,}" in text
    verdicts = "\n".join(bench.verdicts([r]))
    assert "within the 0.3x target" in verdicts and "no worse than 0.285x before" in verdicts

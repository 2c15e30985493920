"""The Python API: docs/python-api.md's example runs as written, and its promises hold."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pytest

import mcunet
from mcunet.errors import McunetError
from mcunet.memory import PlanError
from mcunet.reference import reference_outputs

from .conftest import ROOT, mlperf_model


def test_the_documented_example_runs(tmp_path, monkeypatch, capsys):
    doc = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks, "docs/python-api.md has no python example"
    os.symlink(mlperf_model("kws_ref_model.tflite"), tmp_path / "kws_ref_model.tflite")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), {})
    out = capsys.readouterr().out
    assert "peak SRAM" in out and "(4, 12) int8" in out
    assert (tmp_path / "lib" / "mcunet_model.c").is_file()


def test_compile_takes_str_or_path_and_is_frozen(tmp_path):
    path = mlperf_model("ad01_int8.tflite")
    a, b = mcunet.compile(str(path)), mcunet.compile(Path(path))
    assert a.peak_sram_bytes == b.peak_sram_bytes and a.flash_bytes == b.flash_bytes
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.stack_bytes = 10
    written = a.write(str(tmp_path / "lib"))
    assert {p.name for p in written} >= {"mcunet_model.c", "mcunet_model.h"}
    assert a.library().write(str(tmp_path / "lib2"))  # the library itself takes a str too


def test_simulate_is_bit_exact_and_budgets_fail_clearly():
    path = mlperf_model("kws_ref_model.tflite")
    x = np.random.default_rng(3).integers(-128, 128, size=(2, 49, 10, 1), dtype=np.int8)
    (y,) = mcunet.simulate(path, [x])
    (ref,) = reference_outputs(path.read_bytes(), [x])
    assert np.array_equal(y, ref)
    with pytest.raises(McunetError, match="does not fit"):
        mcunet.compile(path, sram="4KB")
    with pytest.raises(McunetError, match="unknown target"):
        mcunet.compile(path, target="cortex-z9")
    with pytest.raises(McunetError, match="not the target"):
        mcunet.compile(path, board="mps2-an386", target="cortex-m3")


def test_the_target_chooses_the_kernels():
    path = mlperf_model("kws_ref_model.tflite")
    isas = {s.kernel.isa for s in mcunet.compile(path, target="cortex-m4").steps if s.kernel}
    assert "arm-dsp" in isas
    isas = {s.kernel.isa for s in mcunet.compile(path, target="cortex-m3").steps if s.kernel}
    assert isas == {"portable"}


def test_every_compile_verifies_its_plan(monkeypatch):
    """The planner's own check runs in the pipeline: a plan that overlaps two live buffers
    is an internal error, never generated code."""
    import mcunet.compiler as compiler

    real = compiler.plan_arena

    def broken(*args, **kwargs):
        plan = real(*args, **kwargs)
        a, b = next((a, b) for a in plan.buffers for b in plan.buffers
                    if a is not b and a.overlaps_in_time(b) and b.size <= a.size)
        b.offset = a.offset  # two buffers that are live together, on the same bytes
        return plan

    monkeypatch.setattr(compiler, "plan_arena", broken)
    with pytest.raises(PlanError, match="share bytes|unsafe offset"):
        compiler.compile_model(mlperf_model("kws_ref_model.tflite"), patch="none")

"""Patch-based inference: the rewrite is exact (bit-exact outputs for any split and grid), the
automatic choice respects the MAC bound, bad choices get clear errors, and the arena the code
declares is the planned one, guarded on both sides."""
import subprocess

import numpy as np
import pytest

from mcunet.compiler import compile_model, load_graph, lower_graph
from mcunet.errors import McunetError
from mcunet.memory import verify
from mcunet.patch import PatchSpec, parse_patch, stage_lengths
from mcunet.host import build_host, find_cc

from .conftest import mlperf_model
from .opcheck import assert_bit_exact

VWW = "vww_96_int8.tflite"


def test_parse_patch():
    assert parse_patch("auto") == "auto" and parse_patch(" None ") == "none"
    assert parse_patch("3x2@5") == PatchSpec(3, 2, 5)
    assert str(PatchSpec(4, 4, 7)) == "4x4@7"
    for bad in ("3x3", "0x2@1", "axb@1", "3x3@", "3@3"):
        with pytest.raises(McunetError, match="RxC@LAYER"):
            parse_patch(bad)


def test_the_stage_is_a_chain_of_windowed_layers_from_the_input():
    graph = load_graph(mlperf_model(VWW))
    steps, _ = lower_graph(graph)
    lengths = stage_lengths(graph, steps)
    # vww is MobileNetV1: every conv and depthwise layer, up to the average pool.
    assert lengths == list(range(1, len(lengths) + 1))
    assert all(steps[k - 1].op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") for k in lengths[:-1])
    # kws starts with a conv too; the anomaly detector (all FULLY_CONNECTED) has no stage.
    ad = load_graph(mlperf_model("ad01_int8.tflite"))
    assert stage_lengths(ad, lower_graph(ad)[0]) == []


@pytest.mark.parametrize("patch", ["2x2@0", "3x2@2", "4x4@3", "5x3@6", "2x2@12"])
def test_explicit_splits_and_grids_are_bit_exact(patch):
    compiled, _ = assert_bit_exact(mlperf_model(VWW), rows=3, seed=3, patch=patch)
    spec = parse_patch(patch)
    assert compiled.patch is not None and compiled.patch.spec == spec
    assert compiled.patch.stage_steps * spec.rows * spec.cols == compiled.patch.num_steps
    # The halos are recomputed: more MACs than layer by layer, never fewer.
    assert compiled.patch.patched_macs >= compiled.patch.stage_macs
    verify(compiled.plan)


def test_patches_are_bit_exact_under_sanitizers_with_guard_bytes():
    assert_bit_exact(mlperf_model(VWW), rows=2, seed=4, sanitize=True, patch="6x6@4")


def test_auto_lowers_the_peak_within_the_mac_bound():
    path = mlperf_model(VWW)
    layerwise = compile_model(path, patch="none")
    auto = compile_model(path, patch="auto")
    assert auto.patch is not None
    assert auto.peak_sram_bytes < layerwise.peak_sram_bytes
    assert auto.patch.mac_overhead <= 0.15
    assert auto.macs - layerwise.macs == auto.patch.patched_macs - auto.patch.stage_macs
    tight = compile_model(path, patch="auto", max_overhead=0.02)
    assert tight.patch is None or tight.patch.mac_overhead <= 0.02
    assert tight.peak_sram_bytes >= auto.peak_sram_bytes


def test_a_stage_that_cannot_end_at_the_layer_is_refused():
    path = mlperf_model(VWW)
    with pytest.raises(McunetError, match=r"op 29 cannot end a patch stage .* possible last ops: 0, 1"):
        compile_model(path, patch="2x2@29")
    with pytest.raises(McunetError, match="smaller than the 9x9 grid"):
        compile_model(path, patch="9x9@27")  # the last conv's output is 3x3


def test_the_arena_is_exactly_the_plan_and_guarded(tmp_path):
    """The guard build of the library reports the arena's size and catches a write past it."""
    compiled = compile_model(mlperf_model(VWW), patch="auto")
    lib = compiled.library()
    lib.write(tmp_path)
    arena = compiled.plan.arena_bytes
    assert f"#define MCUNET_ARENA_BYTES {arena}" in lib.files["mcunet_model.h"]
    input_offset = compiled.plan.tensor_offset(compiled.graph.inputs[0])
    (tmp_path / "guard_test.c").write_text(f"""
#include <stdio.h>
#include <string.h>
#include "mcunet_model.h"
int main(int argc, char **argv)
{{
    (void)argv;
    int8_t *arena = (int8_t *)mcunet_input(0) - {input_offset};
    mcunet_guard_fill();
    memset(mcunet_input(0), 3, MCUNET_INPUT0_BYTES);
    mcunet_invoke();
    int clean = mcunet_guard_intact();
    if (argc > 1) arena[MCUNET_ARENA_BYTES] = 1;  /* one byte past the end */
    printf("%d %d\\n", clean, mcunet_guard_intact());
    return 0;
}}
""")
    sources = [str(p) for p in tmp_path.rglob("*.c")]
    exe = tmp_path / "guard"
    cmd = [find_cc(), "-std=c99", "-O1", "-DMCUNET_ARENA_GUARD", "-I", str(tmp_path), *sources,
           "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.split() == ["1", "1"]
    assert subprocess.run([str(exe), "x"], capture_output=True, text=True).stdout.split() == ["1", "0"]


def test_patch_trace_reports_the_stage_output_once():
    """A trace build sees the stage's output once, complete, and it matches the reference
    (the per-patch pieces of the inner layers are not reported)."""
    from mcunet.reference import reference_tensors
    path = mlperf_model(VWW)
    compiled = compile_model(path, patch="3x3@3")
    x = np.random.default_rng(5).integers(-128, 128, (1, 96, 96, 3), dtype=np.int8)
    _, records = build_host(compiled, trace=True).run([x], trace=True)
    ops = [op for op, _ in records]
    assert ops.count(3) == 1 and 0 not in ops and 1 not in ops and 2 not in ops
    ref = reference_tensors(path, [x])
    stage_out = compiled.steps[compiled.patch.num_steps - 1].trace[0]
    raw = dict(records)[3]
    assert np.array_equal(np.frombuffer(raw, np.int8), ref[stage_out].reshape(-1))

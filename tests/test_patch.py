"""Patch-based inference and streaming: the rewrites are exact (bit-exact outputs for any
section, grid or band schedule, through residual blocks and branches), the automatic choice
respects the work bound, bad choices get clear errors, and the arena the code declares is the
planned one, guarded on both sides."""
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mcunet.codegen.rewrites import fuse_residual_adds
from mcunet.compiler import compile_graph, compile_model, load_graph, lower_graph
from mcunet.errors import McunetError
from mcunet.frontend import parse_tflite
from mcunet.memory import verify
from mcunet.passes import run_passes
from mcunet.patch import PatchSpec, parse_patch
from mcunet.stream import StreamSpec
from mcunet.tiling import NotTileable, cuts, section
from mcunet.host import build_host, find_cc

from .conftest import mlperf_model
from .netgen import MBConvNet, ResNet, random_net
from .opcheck import assert_bit_exact

VWW = "vww_96_int8.tflite"
RESNET = "pretrainedResnet_quant.tflite"


def fused_steps(graph):
    return fuse_residual_adds(graph, lower_graph(graph)[0])


def test_parse_patch():
    assert parse_patch("auto") == "auto" and parse_patch(" None ") == "none"
    assert parse_patch("3x2@5") == PatchSpec(3, 2, 5)
    assert parse_patch("4x1@2-9") == PatchSpec(4, 1, 9, 2)
    assert parse_patch("stream@3-7") == StreamSpec(3, 7)
    assert parse_patch("8x8@0-3,stream@4-7") == (PatchSpec(8, 8, 3, 0), StreamSpec(4, 7))
    assert str(PatchSpec(4, 4, 7)) == "4x4@7" and str(PatchSpec(2, 3, 7, 1)) == "2x3@1-7"
    assert str(StreamSpec(3, 7)) == "stream@3-7" and str(StreamSpec(3, 7, 2)) == "stream2@3-7"
    for bad in ("3x3", "0x2@1", "axb@1", "3x3@", "3@3", "stream@3", "2x2@1,"):
        with pytest.raises(McunetError, match="RxC@LAYER"):
            parse_patch(bad)


def test_cuts_and_sections():
    """vww (MobileNetV1) can be cut after every layer up to the pooling; in ResNet-8 only the
    block boundaries are cuts (the skip crosses the rest), and a section spans whole blocks."""
    vww = load_graph(mlperf_model(VWW))
    steps = fused_steps(vww)
    positions = [c.position for c in cuts(vww, steps)]
    assert positions == list(range(len(steps) + 1))
    sec = section(vww, steps, 0, 4)
    assert (sec.first_op, sec.last_op, sec.x) == (0, 3, vww.inputs[0])
    with pytest.raises(NotTileable, match="NHWC"):
        section(vww, steps, 20, 29)  # up to the RESHAPE's output
    resnet = load_graph(mlperf_model(RESNET))
    steps = fused_steps(resnet)
    positions = [c.position for c in cuts(resnet, steps)]
    assert positions[:5] == [0, 1, 3, 6, 9]  # stem | conv, conv+ADD | conv, conv, 1x1+ADD | ...
    sec = section(resnet, steps, 3, 6)
    assert sec.last_op == 7 and len(sec.nodes) == 3  # the block ends with the fused ADD 7


@pytest.mark.parametrize("patch", [
    "2x2@0", "4x4@3", "3x1@5-9", "stream@4-7,stream@8-11",
    pytest.param("3x2@2", marks=pytest.mark.slow), pytest.param("5x3@6", marks=pytest.mark.slow),
    pytest.param("2x2@12", marks=pytest.mark.slow),
    pytest.param("2x5@4-11", marks=pytest.mark.slow),
    pytest.param("stream@0-3", marks=pytest.mark.slow)])
def test_explicit_sections_are_bit_exact(patch):
    compiled, _ = assert_bit_exact(mlperf_model(VWW), rows=2, seed=3, patch=patch)
    specs = parse_patch(patch)
    specs = specs if isinstance(specs, tuple) else (specs,)
    assert [s.spec for s in compiled.stages] == list(specs)
    for stage, spec in zip(compiled.stages, specs):
        if isinstance(spec, PatchSpec):
            assert stage.stage_steps * spec.rows * spec.cols == stage.num_steps
            # The halos are recomputed: more MACs than layer by layer, never fewer.
            assert stage.patched_macs >= stage.stage_macs
        else:
            assert stage.patched_macs == stage.stage_macs  # nothing is recomputed
    verify(compiled.plan)


def small_mbconv() -> bytes:
    """A 32x32 MBConv network with skips from its first block on, 5x5 and 7x7 windows and odd
    channel counts."""
    return MBConvNet(32, 7, ((3, 3, 7, 2, 1), (4, 5, 11, 2, 2), (3, 7, 17, 1, 2)), 22, seed=11).build()


@pytest.mark.parametrize("patch", [
    "3x2@0-11", "3x3@0-11,stream@12-18", "stream2@1-4,3x1@5-15",
    pytest.param("4x4@0-11", marks=pytest.mark.slow), pytest.param("4x1@1-8", marks=pytest.mark.slow),
    pytest.param("2x1@9-15", marks=pytest.mark.slow), pytest.param("stream@1-8", marks=pytest.mark.slow)])
def test_patches_and_streams_run_through_residual_blocks(patch):
    """The skip's tile travels with the patch; the fused conv+ADD runs per patch or band."""
    compiled, _ = assert_bit_exact(small_mbconv(), rows=2, seed=1, patch=patch)
    assert compiled.schedule == patch
    assert any(s.layer is not None and getattr(s.layer, "fused_add", None) is not None
               for stage in compiled.stages for s in compiled.steps[stage.start:stage.end])


def test_a_residual_whose_pitch_differs_from_its_output_is_refused():
    # The stage ends with the fused ADD: with columns its residual tile (with halo) is
    # narrower than the stage output's rows, which the fused kernel reads at one pitch; or it
    # starts with a residual block, whose skip is the stage input, read at its full width.
    graph = run_passes(parse_tflite(small_mbconv()))
    for patch in ("2x2@0-8", "2x2@12-18"):
        with pytest.raises(McunetError, match="residual is stored"):
            compile_graph(graph, patch=patch)


def test_streaming_a_residual_cnn_needs_one_tensor_and_a_few_rows():
    """ResNet-8's first block holds its 16 KB input for the ADD while its first conv writes
    16 KB more; streamed, the block's output goes over the rows of its input that no later row
    needs."""
    path = mlperf_model(RESNET)
    layerwise = compile_model(path, patch="none")
    streamed, _ = assert_bit_exact(path, rows=2, seed=2, patch="stream@1-3,stream@4-7,stream@8-11")
    assert layerwise.peak_sram_bytes == 32768
    assert streamed.peak_sram_bytes < 20000
    assert streamed.macs == layerwise.macs
    kinds = {ov.kind for ov, _ in streamed.plan.overlaps}
    assert "stream" in kinds
    assert streamed.plan.lower_bound <= streamed.plan.arena_bytes


def test_streams_are_bit_exact_under_sanitizers_with_guard_bytes():
    data = ResNet(12, (5, 9), 1, seed=4).build()
    assert_bit_exact(data, rows=2, seed=4, sanitize=True, patch="stream@1-3,stream2@4-7")


def test_patches_are_bit_exact_under_sanitizers_with_guard_bytes():
    assert_bit_exact(mlperf_model(VWW), rows=2, seed=4, sanitize=True, patch="6x6@4")


def random_specs(data: bytes, rng: np.random.Generator) -> str:
    """One to three disjoint sections of a network, each patched on a random grid or streamed
    in bands of one or two rows."""
    graph = run_passes(parse_tflite(data))
    steps = fused_steps(graph)
    cut_list = cuts(graph, steps)
    sections = []
    for i, a in enumerate(cut_list):
        for b in cut_list[i + 1:]:
            try:
                sections.append(section(graph, steps, a.position, b.position, cut_list))
            except NotTileable:
                pass
    rng.shuffle(sections)
    chosen = []
    for sec in sections:
        if all(sec.hi <= c.lo or c.hi <= sec.lo for c in chosen):
            chosen.append(sec)
        if len(chosen) == int(rng.integers(1, 4)):
            break
    specs = []
    for sec in sorted(chosen, key=lambda s: s.lo):
        _, th, tw, _ = graph.t(sec.t).shape
        if rng.random() < 0.5:
            specs.append(str(StreamSpec(sec.first_op, sec.last_op, int(rng.integers(1, 3)))))
        else:
            rows, cols = int(rng.integers(1, min(th, 4) + 1)), int(rng.integers(1, min(tw, 4) + 1))
            specs.append(str(PatchSpec(rows, cols, sec.last_op, sec.first_op)))
    return ",".join(specs)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_random_sections_of_random_networks_are_bit_exact(seed):
    """Random networks with residual blocks (fused or not), branches joined by concatenation,
    pooling, 1x1 to 7x7 windows, strides 1 and 2, SAME and VALID padding and odd sizes; one to
    three random sections patched or streamed: every plan verifies and every output byte
    matches TFLite. A grid the rewrite refuses (a residual read at another pitch, an
    elementwise op on a tile narrower than its buffer) must say so."""
    rng = np.random.default_rng(seed)
    data = random_net(rng)
    patch = random_specs(data, rng)
    if not patch:
        return
    try:
        compiled, _ = assert_bit_exact(data, rows=2, seed=seed % 1000, patch=patch)
    except McunetError as e:
        assert "stored" in str(e) or "wide" in str(e), str(e)
        return
    assert compiled.schedule == patch


def test_auto_lowers_the_peak_within_the_work_bound():
    path = mlperf_model(VWW)
    layerwise = compile_model(path, patch="none")
    auto = compile_model(path, patch="auto")
    assert auto.stages
    assert auto.peak_sram_bytes < layerwise.peak_sram_bytes
    assert 0 < auto.overhead <= 0.15  # estimated instructions (mcunet.work)
    extra = sum(s.patched_macs - s.stage_macs for s in auto.stages)
    assert auto.macs - layerwise.macs == extra
    tight = compile_model(path, patch="auto", max_overhead=0.002)
    assert tight.overhead <= 0.002
    assert tight.peak_sram_bytes >= auto.peak_sram_bytes


def test_auto_streams_residual_cnns():
    auto = compile_model(mlperf_model(RESNET))
    assert any(s.kind == "stream" for s in auto.stages)
    assert auto.peak_sram_bytes <= 0.45 * 55984  # TFLM's arena for this model: 55,984 bytes


def test_with_a_budget_auto_takes_the_least_work_that_fits():
    path = mlperf_model(VWW)
    smallest = compile_model(path)
    loose = compile_model(path, sram_budget=smallest.peak_sram_bytes + 8000)
    assert loose.peak_sram_bytes <= smallest.peak_sram_bytes + 8000
    assert loose.overhead <= smallest.overhead
    tight = compile_model(path, sram_budget=1000)  # nothing fits: the smallest plan
    assert tight.peak_sram_bytes == smallest.peak_sram_bytes
    # Where layer by layer fits, nothing is faster: no stage at all.
    layerwise = compile_model(path, patch="none")
    roomy = compile_model(path, sram_budget=layerwise.plan.arena_bytes)
    assert not roomy.stages and roomy.plan.arena_bytes == layerwise.plan.arena_bytes


def test_auto_keeps_the_layer_by_layer_plan_it_weighed():
    """The figure and the reports show the layer-by-layer plan `auto` compared its stages
    with: the same plan as --patch none, without planning it twice."""
    path = mlperf_model(VWW)
    auto = compile_model(path)
    layerwise = compile_model(path, patch="none")
    assert auto.stages and auto.layer_by_layer is not None
    assert not auto.layer_by_layer.stages
    assert auto.layer_by_layer.plan.arena_bytes == layerwise.plan.arena_bytes
    assert [r["live_bytes"] for r in auto.layer_by_layer.layers] == \
        [r["live_bytes"] for r in layerwise.layers]
    assert compile_model(path, patch="none").layer_by_layer is None


def test_a_section_that_cannot_end_at_the_layer_is_refused():
    path = mlperf_model(VWW)
    with pytest.raises(McunetError, match=r"op 29 cannot end a patch stage .* possible last ops: 0, 1"):
        compile_model(path, patch="2x2@29")
    with pytest.raises(McunetError, match="smaller than the 9x9 grid"):
        compile_model(path, patch="9x9@27")  # the last conv's output is 3x3
    with pytest.raises(McunetError, match="op 2 cannot start a streamed section"):
        compile_model(mlperf_model(RESNET), patch="stream@2-3")  # inside a residual block
    with pytest.raises(McunetError, match="overlap"):
        compile_model(path, patch="2x2@0-5,stream@3-7")


def test_the_report_marks_stages_and_names_the_windows_behind_the_halos():
    compiled = compile_model(mlperf_model(VWW), patch="8x8@0-5,stream@6-9")
    marks = {r["index"]: r["marks"] for r in compiled.layers}
    assert "patch 8x8" in marks[0] and "patch 8x8" in marks[5] and "stream" in marks[7]
    assert "over stage input" in marks[5]
    stage = compiled.stages[0]
    assert stage.blame and stage.blame[0][0] in (1, 3, 5)  # the 3x3 depthwise layers
    summary = compiled.summary()
    assert summary["patch"] == "8x8@0-5,stream@6-9"
    assert [s["kind"] for s in summary["stages"]] == ["patch", "stream"]


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

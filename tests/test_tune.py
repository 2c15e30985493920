"""Per-layer kernel choice (mcunet.tune, --tune): every candidate computes the same bytes,
a tune measures each on the emulated M4 and later compiles use its choice from the cache."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mcunet.boards import get_board
from mcunet.boards.firmware import run_on_board
from mcunet.boards.tune import tune_graph
from mcunet.codegen import kernels
from mcunet.codegen.library import LibraryOptions
from mcunet.compiler import compile_graph, load_graph
from mcunet.frontend import parse_tflite
from mcunet.host import build_host, random_inputs
from mcunet.passes import run_passes
from mcunet.reference import reference_outputs
from mcunet.target import get_target
from mcunet.tune import Candidate, Choices, Measurements, cache_path, candidates, signature

from .conftest import run_cli
from .netgen import MBConvNet

M4 = get_target("cortex-m4")


@pytest.fixture
def tune_cache(tmp_path, monkeypatch):
    """A tune cache of the test's own."""
    monkeypatch.setenv("MCUNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def small_net(path) -> None:
    """Odd widths, a 5x5 depthwise block with a skip, and a head."""
    path.write_bytes(MBConvNet(20, 7, ((3, 5, 7, 2, 1), (4, 3, 13, 1, 2)), 18, seed=4).build("tn"))


def first_conv(tmp_path):
    """The small net's first DSP conv (by the rule) and its candidates on the M4."""
    path = tmp_path / "n.tflite"
    small_net(path)
    model = compile_graph(load_graph(path), patch="none", target=M4, choices=Choices())
    conv = next(s for s in model.steps if s.kernel is kernels.CONV2D_S8_DSP)
    return conv, candidates(conv, M4.isas)


def test_candidates_give_each_blocking_its_own_scratch_and_block(tmp_path):
    conv, options = first_conv(tmp_path)
    keys = [Candidate.of(o).key for o in options]
    assert keys[0] == "conv2d_s8_dsp" and keys[-1] == "conv2d_s8"  # the rule's first, portable last
    blocks = {o.kernel.constants(o.layer)["P"] for o in options if o.kernel is kernels.CONV2D_S8_DSP}
    assert blocks == set(kernels.CONV_DSP_BLOCKS)
    for o in options:
        if o.kernel is kernels.CONV2D_S8_DSP:
            p = o.kernel.constants(o.layer)["P"]
            assert o.kernel.overlap.block(o.layer) == p
            # P windows of int16, each padded to whole groups of four values, then the
            # channel records (which do not depend on the blocking)
            assert o.kernel.scratch.bytes(o.layer) == 2 * p * kernels.conv_padded_window(o.layer) \
                + kernels.conv_dsp_record_bytes(o.layer)
            assert kernels.conv_dsp_record_bytes(o.layer) == 16 * 6  # 7 channels: 3 pairs
    # The signature ignores the blocking: every candidate is the same layer.
    assert len({signature(o) for o in options}) == 1


def test_every_forced_candidate_is_bit_exact_on_the_host(tmp_path):
    path = tmp_path / "n.tflite"
    small_net(path)
    data = path.read_bytes()
    graph = run_passes(parse_tflite(data))
    base = compile_graph(graph, patch="none", target=M4, choices=Choices())
    options = {signature(s): candidates(s, M4.isas) for s in base.steps if s.kernel is not None}
    rounds = max(len(o) for o in options.values())
    assert rounds >= 5  # the DSP conv's four blocks and the portable conv
    inputs = random_inputs(base.graph, 2, seed=1)
    ref = reference_outputs(data, inputs)
    for r in range(rounds):
        force = {sig: Candidate.of(o[min(r, len(o) - 1)]).key for sig, o in options.items()}
        model = compile_graph(graph, patch="none", target=M4, choices=Choices(force=force))
        used = {Candidate.of(s).key for s in model.steps if s.kernel is not None}
        assert set(force.values()) & used, "the forced candidates were not compiled"
        ours, _ = build_host(model, extra_flags=["-O1"]).run(inputs)
        for mine, want in zip(ours, ref):
            assert np.array_equal(mine, want), f"round {r}: {np.count_nonzero(mine != want)} differ"


def test_measurements_choose_the_fewest_instructions_once_all_were_tried(tmp_path):
    conv, options = first_conv(tmp_path)
    m = Measurements("cortex-m4")
    for k, o in enumerate(options[:-1]):
        m.record(o, 1000 - k)
    assert m.best(conv, options) is None  # the portable one was not tried
    m.record(options[-1], None)  # tried, never ran alone
    assert Candidate.of(m.best(conv, options)) == Candidate.of(options[-2])
    m.record(options[-1], 5)
    assert m.best(conv, options).kernel is kernels.CONV2D_S8
    m.record(options[-1], None)  # a later "not alone" keeps the count
    assert m.best(conv, options).kernel is kernels.CONV2D_S8


def test_tune_through_the_cli_is_measured_cached_and_used(tmp_path, tune_cache):
    """One tune of the small net (the costly part: a firmware run per candidate round), then
    everything that follows from it: the CLI's report, the cache's counts, a second tune and a
    second compile that measure nothing, and a compile that takes the measured best."""
    path = tmp_path / "n.tflite"
    small_net(path)
    proc = run_cli("compile", path, "--target", "cortex-m4", "--patch", "none", "--out",
                   tmp_path / "lib", "--tune")
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("tuned "))
    assert "on mps2-an386" in line and "the registry rule's pick on" in line
    rounds = int(line.split(" in ")[1].split(" run(s)")[0])
    assert rounds >= 5  # the DSP conv's four blockings and the portable conv
    cached = json.loads(cache_path("cortex-m4").read_text())["layers"]
    assert cached
    for counts in cached.values():
        assert all(v is None or v > 0 for v in counts.values())
    graph = load_graph(path)
    base = compile_graph(graph, patch="none", target=M4, choices=Choices())
    # Every conv's blockings were measured, and differ (the measurement sees them).
    convs = [signature(s) for s in base.steps if s.kernel is kernels.CONV2D_S8_DSP]
    assert convs and all(len({v for v in cached[sig].values() if v is not None}) > 1
                         for sig in convs)
    # A second tune measures nothing, nor does a second compile --tune.
    again = tune_graph(graph, "cortex-m4", LibraryOptions())
    assert again.rounds == 0 and not again.layers and "before (cache)" in again.summary()
    proc = run_cli("compile", path, "--target", "cortex-m4", "--patch", "none", "--out",
                   tmp_path / "lib", "--tune")
    assert proc.returncode == 0 and "measured on mps2-an386 before (cache)" in proc.stdout
    # A compile takes the measured best of every layer.
    model = compile_graph(graph, patch="none", target=M4)
    chosen = set()
    for s in model.steps:
        if s.kernel is None or signature(s) not in cached:
            continue
        counts = {k: v for k, v in cached[signature(s)].items() if v is not None}
        # (the measured fewest: a tie, e.g. two FC variants at the same count, either one)
        assert counts[Candidate.of(s).key] == min(counts.values())
        chosen.add(signature(s))
    assert chosen == {sig for sig, counts in cached.items()
                      if any(v is not None for v in counts.values())}
    # The tuned firmware is bit-exact on the board.
    inputs = random_inputs(model.graph, 1, seed=2)
    result = run_on_board(model, get_board("mps2-an386"), inputs)
    for mine, want in zip(result.outputs, reference_outputs(path.read_bytes(), inputs)):
        assert np.array_equal(mine, want)


def test_cache_name_follows_the_kernel_templates(tune_cache, monkeypatch):
    from mcunet import tune

    first = cache_path("cortex-m4")
    monkeypatch.setattr(tune, "_templates_digest", lambda: "0" * 16)
    assert cache_path("cortex-m4") != first


def test_cli_tune_needs_a_cortex_m_target(tmp_path, tune_cache):
    path = tmp_path / "n.tflite"
    small_net(path)
    proc = run_cli("compile", path, "--out", tmp_path / "lib", "--tune")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --tune needs a Cortex-M target with an emulated board; host has none "
        "(give --board or --target cortex-m0plus|m3|m4|m7|m33)"]
    proc = run_cli("run", "--project", tmp_path, "--tune")
    assert proc.returncode == 2 and "--tune" in proc.stderr and "Traceback" not in proc.stderr

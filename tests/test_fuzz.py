"""scripts/fuzz.py in the default tests: three hundred mutated models end in a compiled model
or mcunet's own one-line error, none takes long, and a sample of the successes is bit-exact
with TFLite under ASan/UBSan. Below, the crashes and mismatches the fuzzer found along the way,
as constructions."""
from __future__ import annotations

import importlib.util
import struct
import sys
import time
from collections import Counter

import numpy as np
import pytest
import tflite

from mcunet.compiler import compile_graph
from mcunet.errors import McunetError
from mcunet.frontend import parse_tflite
from mcunet.passes import run_passes

from .conftest import MLPERF, ROOT, mlperf_model
from .modelgen import ModelBuilder
from .opcheck import assert_bit_exact

spec = importlib.util.spec_from_file_location("mcunet_fuzz", ROOT / "scripts" / "fuzz.py")
fuzz = importlib.util.module_from_spec(spec)
sys.modules["mcunet_fuzz"] = fuzz  # dataclasses look their module up
spec.loader.exec_module(fuzz)

CASES = 300
TIME_LIMIT = 10.0  # seconds per case: a generous guard, cases take milliseconds


SEED = 20261201


@pytest.fixture(scope="module")
def corpus():
    for name in MLPERF:
        mlperf_model(name)  # fail clearly when the corpus is missing
    # vww (a second per case, for its patch search) is left to the script's campaign.
    return fuzz.load_corpus(mlperf=["kws_ref_model", "pretrainedResnet_quant", "ad01_int8"])


@pytest.fixture(scope="module")
def campaign(corpus):
    return fuzz.campaign(corpus, CASES, seed=SEED, timeout=TIME_LIMIT)


def test_every_case_compiles_or_fails_with_mcunets_error(campaign):
    outcomes = Counter(r.outcome for r in campaign)
    bad = [r for r in campaign if r.outcome not in ("ok", "error")]
    assert not bad, [(r.index, r.model, r.notes, r.outcome, r.detail[:300]) for r in bad[:5]]
    assert len(campaign) == CASES and outcomes["ok"] >= CASES // 10 and outcomes["error"] >= CASES // 2
    assert max(r.seconds for r in campaign) < TIME_LIMIT / 2
    for r in campaign:
        if r.outcome == "error":
            assert r.detail and "\n" not in r.detail, (r.index, r.detail)
            assert "Traceback" not in r.detail and "internal error" not in r.detail


def test_a_sample_of_the_successes_is_bit_exact_under_the_sanitizers(corpus, campaign):
    generated = [r for r in campaign if r.model in fuzz.GENERATED]  # small builds
    report = fuzz.sanitize_sample(generated, 3, seed=3, corpus=corpus, campaign_seed=SEED)
    assert len(report) == 3
    assert all(verdict == "bit-exact" for _, verdict, _ in report), \
        [(r.index, r.model, r.notes, v, d[:300]) for r, v, d in report if v != "bit-exact"]


def test_the_generated_corpus_is_valid_and_bit_exact(monkeypatch):
    monkeypatch.setattr("mcunet.memory.EXHAUSTIVE_BUFFERS", fuzz.EXHAUSTIVE)  # as in the fuzzer
    for name, data in fuzz.generated_corpus().items():
        assert_bit_exact(data, rows=2)


def test_the_mutations_reach_every_kind_of_site():
    sites = fuzz.find_sites(fuzz.generated_corpus()["mini_mobilenet"])
    kinds = {s.kind for s in sites}
    assert {"tensor_index", "dim", "dtype", "buffer", "scale", "zero_point", "qdim",
            "opcode_index", "options_type", "option", "vec_len", "const_value", "op_order",
            "builtin_code"} <= kinds


# --- regressions: what the fuzzer found ------------------------------------------------------

def _conv_model() -> bytes:
    m = ModelBuilder()
    x = m.input((1, 4, 4, 2), "int8", scale=0.05, zero_point=0)
    w = m.const(np.ones((3, 1, 1, 2), np.int8), scale=[0.01] * 3, zero_point=[0] * 3)
    b = m.const(np.zeros(3, np.int32), scale=[0.0005] * 3, zero_point=[0] * 3)
    y = m.tensor((1, 4, 4, 3), "int8", scale=0.1, zero_point=0)
    m.op("CONV_2D", [x, w, b], [y], padding="SAME")
    m.output(y)
    return m.build()


def test_negative_vtable_offset_is_malformed_not_a_type_error():
    """flatbuffers raises TypeError ('bad number') on an offset read from damaged bytes."""
    data = bytearray(_conv_model())
    t = tflite.Model.GetRootAs(bytes(data), 0).Subgraphs(0).Tensors(0)
    struct.pack_into("<i", data, t._tab.Pos, t._tab.Pos + 1_000_000)  # vtable before the file
    with pytest.raises(McunetError, match=r"malformed .tflite 'model': tensor 0 could not be read"):
        parse_tflite(bytes(data))


def test_builtin_code_is_read_as_stored():
    """The `tflite` package's BuiltinCode() returns the deprecated code below 127; TFLite takes
    the larger of the two fields, so builtin_code 49 with a deprecated 3 is SPLIT, not CONV_2D."""
    data = bytearray(_conv_model())
    code = tflite.Model.GetRootAs(bytes(data), 0).OperatorCodes(0)
    struct.pack_into("<i", data, code._tab.Pos + code._tab.Offset(10), 49)
    with pytest.raises(McunetError, match="unsupported operator SPLIT at index 0"):
        compile_graph(run_passes(parse_tflite(bytes(data))))


def _shape_arithmetic(slice_options: bool = True, values_count: int = 2) -> bytes:
    return fuzz.shape_arithmetic(np.random.default_rng(0), slice_options, values_count,
                                 dense=False)


def test_folded_shapes_must_match_the_tensors():
    assert_bit_exact(_shape_arithmetic(), rows=2)
    with pytest.raises(McunetError, match=r"STRIDED_SLICE at index 1 computes a value of shape "
                                          r"\(1,\) but its output 'tensor_5' has shape \(\)"):
        run_passes(parse_tflite(_shape_arithmetic(slice_options=False)))
    with pytest.raises(McunetError, match="PACK at index 2: values_count is 1 but the op has 2 "
                                          "inputs"):
        parse_tflite(_shape_arithmetic(values_count=1))


def test_residual_add_of_the_convs_own_input():
    """y = x + conv3x3(x): the conv's input is also the ADD's residual, so the ADD is not fused
    (the sum written over x would overwrite what the conv's later windows read)."""
    rng = np.random.default_rng(1)
    m = ModelBuilder()
    x = m.input((1, 6, 6, 4), "int8", scale=0.05, zero_point=0)
    w = m.const(rng.integers(-127, 128, (4, 3, 3, 4)).astype(np.int8), scale=[0.01] * 4,
                zero_point=[0] * 4)
    b = m.const(np.zeros(4, np.int32), scale=[0.0005] * 4, zero_point=[0] * 4)
    c = m.tensor((1, 6, 6, 4), "int8", scale=0.1, zero_point=0)
    m.op("CONV_2D", [x, w, b], [c], padding="SAME")
    y = m.tensor((1, 6, 6, 4), "int8", scale=0.12, zero_point=0)
    m.op("ADD", [x, c], [y])
    m.output(y)
    assert_bit_exact(m.build(), rows=2, patch="none")


def _spin_or_block(data, dsp):
    """A stand-in for run_one: b"spin" computes forever, b"block" waits forever, else ok."""
    if data == b"spin":
        while True:
            pass
    if data == b"block":
        time.sleep(3600)
    return "ok", ""


def test_hangs_are_cpu_time_or_blocking_not_a_busy_machine(monkeypatch):
    """A case is a hang when it computes past the limit (the worker's CPU time) or waits past
    BLOCKED_FACTOR times it; a case that finishes is not, however long the machine took."""
    monkeypatch.setattr(fuzz, "run_one", _spin_or_block)  # the workers fork after this
    # (12: a spin gets its 0.5 s of CPU well before 6 s even on a machine loaded 10 deep)
    monkeypatch.setattr(fuzz, "BLOCKED_FACTOR", 12)
    pool = fuzz.Pool(3, 0.5, 0, fuzz.EXHAUSTIVE)
    try:
        jobs = [(0, b"spin", False, "plan"), (1, b"block", False, "plan"), (2, b"", False, "plan")]
        outcomes = {i: (outcome, detail, s) for i, outcome, detail, s in pool.run(jobs)}
    finally:
        pool.close()
    assert outcomes[0][:2] == ("hang", "over 0.5 s of CPU") and outcomes[0][2] < 6.0
    assert outcomes[1][:2] == ("hang", "over 6 s (blocked)") and outcomes[1][2] >= 6.0
    assert outcomes[2][0] == "ok"

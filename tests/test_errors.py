"""Bad input ends in one readable line on stderr, exit code 2, and no traceback."""
import numpy as np
import pytest

from .conftest import mlperf_model, run_cli
from .modelgen import ModelBuilder


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def conv_model(dtype="int8", extra_op=None, **kw) -> bytes:
    """A 1x8x8x3 -> 1x8x8x4 conv; dtype picks the activation type."""
    rng = np.random.default_rng(0)
    m = ModelBuilder(**kw)
    q = {} if dtype == "float32" else {"scale": 0.05, "zero_point": 0}
    x = m.input((1, 8, 8, 3), dtype, **q)
    if dtype == "float32":
        w = m.const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
        b = m.const(np.zeros(4, np.float32))
    else:
        w = m.const(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), scale=[0.01] * 4,
                    zero_point=[0] * 4, quantized_dimension=0)
        b = m.const(np.zeros(4, np.int32 if dtype == "int8" else np.int64),
                    scale=[0.0005] * 4, zero_point=[0] * 4)
    y = m.tensor((1, 8, 8, 4), dtype, **q)
    m.op("CONV_2D", [x, w, b], [y], padding="SAME")
    if extra_op:
        z = m.tensor((1, 8, 8, 4), dtype, **q)
        m.op(extra_op, [y], [z])
        y = z
    m.output(y)
    return m.build()


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path):
    assert_clean_error(run_cli("compile", tmp_path / "nope.tflite", "--out", tmp_path / "o"),
                       "no such file", "nope.tflite")


def test_directory_instead_of_file(tmp_path):
    assert_clean_error(run_cli("plan", tmp_path), "directory")


def test_garbage_file(tmp_path):
    path = write(tmp_path, "garbage.tflite", np.random.default_rng(1).bytes(4096))
    assert_clean_error(run_cli("compile", path, "--out", tmp_path / "o"), "not a TensorFlow Lite model")


def test_empty_file(tmp_path):
    assert_clean_error(run_cli("plan", write(tmp_path, "empty.tflite", b"")), "empty")


@pytest.mark.parametrize("keep", [100, 5000, 200_000, 333_000])
def test_truncated_model(tmp_path, keep):
    data = mlperf_model("vww_96_int8.tflite").read_bytes()[:keep]
    assert_clean_error(run_cli("plan", write(tmp_path, "cut.tflite", data)), "malformed", "truncated")


def test_float_model(tmp_path):
    path = write(tmp_path, "float.tflite", conv_model("float32"))
    assert_clean_error(run_cli("compile", path, "--out", tmp_path / "o"), "float model",
                       "CONV_2D at index 0", "int8")


def test_int16_model(tmp_path):
    path = write(tmp_path, "int16.tflite", conv_model("int16"))
    assert_clean_error(run_cli("plan", path), "int16", "int8 activations only")


def test_unsupported_op_is_named_with_its_index(tmp_path):
    path = write(tmp_path, "exp.tflite", conv_model(extra_op="EXP"))
    assert_clean_error(run_cli("simulate", path, "--random", "1"), "unsupported operator EXP",
                       "index 1")


def test_multiple_subgraphs(tmp_path):
    path = write(tmp_path, "two.tflite", conv_model(num_subgraphs=2))
    assert_clean_error(run_cli("inspect", path), "2 subgraphs")


def test_simulate_input_of_the_wrong_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 10, 49, 1), np.int8))
    r = run_cli("simulate", mlperf_model("kws_ref_model.tflite"), "--input", tmp_path / "x.npy")
    assert_clean_error(r, "shape (2, 10, 49, 1)", "(N, 49, 10, 1)")


def test_simulate_input_of_the_wrong_dtype(tmp_path):
    # (Float rows are quantised with the model's input parameters: tests/test_quantize.py.)
    np.save(tmp_path / "x.npy", np.zeros((2, 49, 10, 1), np.int32))
    r = run_cli("simulate", mlperf_model("kws_ref_model.tflite"), "--input", tmp_path / "x.npy")
    assert_clean_error(r, "dtype int32", "int8")


def test_unknown_patch_choice():
    r = run_cli("plan", mlperf_model("ad01_int8.tflite"), "--patch", "3x3@7")
    assert_clean_error(r, "--patch")


def test_inspect_lists_every_unsupported_operator_at_once(tmp_path):
    rng = np.random.default_rng(0)
    m = ModelBuilder()
    x = m.input((1, 8, 8, 3), "int8", scale=0.05, zero_point=0)
    t = m.tensor((1, 8, 8, 3), "int8", scale=1 / 128, zero_point=0)
    m.op("EXP", [x], [t])
    idx = m.const(rng.integers(0, 3, (2,)).astype(np.int32))
    g = m.tensor((1, 8, 8, 2), "int8", scale=1 / 128, zero_point=0)
    m.op("GATHER", [t, idx], [g], axis=3)
    m.output(g)
    path = write(tmp_path, "two.tflite", m.build())
    r = run_cli("inspect", path)
    assert_clean_error(r, "unsupported operators EXP at index 0, GATHER at index 1",
                       "mcunet supports")
    assert "EXP" in r.stdout and "GATHER" in r.stdout  # the table came first


@pytest.mark.parametrize("size", ["1e3", "0", "0KB", "-3KB", "32XB"])
def test_plan_and_search_read_sizes_alike(tmp_path, size):
    path = mlperf_model("ad01_int8.tflite")
    assert_clean_error(run_cli("plan", path, "--sram", size, "--no-png"), repr(size))
    assert_clean_error(run_cli("search", "--sram", size, "--flash", "64KB",
                               "--out", tmp_path / "s"), repr(size))

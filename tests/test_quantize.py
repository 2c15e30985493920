"""Keras in, accuracy out: `mcunet quantize` (TF's converter, full int8), compile and plan
straight from a Keras model with --calibration, `mcunet evaluate` on the host and on the
emulated Cortex-M4, and float rows for an int8 model in simulate."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mcunet.compiler import compile_model
from mcunet.reference import reference_outputs

from .conftest import ROOT, mlperf_model, run_cli

tf = pytest.importorskip("tensorflow", reason="the [tf] extra (scripts/setup.sh installs it)")

needs_qemu = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (scripts/setup.sh installs them)")


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    """A small CNN trained here on 4,000 Fashion-MNIST images (a few seconds; about 80%
    top-1), saved as .keras: what a user brings."""
    from mcunet.search.data import load_dataset

    ds = load_dataset("fashion-mnist")
    x = ds.train.x[:4000].astype(np.float32) / 255.0
    y = ds.train.y[:4000]
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        tf.keras.layers.Conv2D(16, 1, activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("keras") / "cnn.keras"
    model.save(path)
    return path


def test_quantize_compile_and_check(small_cnn, tmp_path):
    out = tmp_path / "cnn.tflite"
    r = run_cli("quantize", small_cnn, "--calibration", "fashion-mnist", "--out", out,
                "--samples", "100")
    assert r.returncode == 0, r.stderr
    assert "int8 input and output" in r.stdout and "input 0:" in r.stdout
    x = np.random.default_rng(0).integers(-128, 128, (3, 28, 28, 1)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("simulate", out, "--input", tmp_path / "x.npy", "--check")
    assert r.returncode == 0, r.stderr
    assert "bit-exact: 3 rows" in r.stdout
    # compile straight from the Keras file: the same int8 model (cached conversion).
    r = run_cli("compile", small_cnn, "--calibration", "fashion-mnist", "--out", tmp_path / "lib",
                "--target", "cortex-m4")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "lib" / "mcunet_model.h").is_file()
    plan = json.loads(run_cli("plan", small_cnn, "--calibration", "fashion-mnist", "--json",
                              "--no-png").stdout)
    assert plan["macs"] == compile_model(out).macs
    # Without a calibration, a Keras model is refused with what to do.
    r = run_cli("plan", small_cnn, "--no-png")
    assert r.returncode == 2 and "give --calibration" in r.stderr
    # Float I/O: QUANTIZE and DEQUANTIZE at the edges, compiled and bit-exact too.
    cal = np.random.default_rng(1).random((20, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "cal.npy", cal)
    r = run_cli("quantize", small_cnn, "--calibration", tmp_path / "cal.npy", "--io", "float",
                "--out", tmp_path / "f.tflite")
    assert r.returncode == 0, r.stderr
    steps = compile_model(tmp_path / "f.tflite").steps
    assert steps[0].op.kind == "QUANTIZE" and steps[-1].op.kind == "DEQUANTIZE"
    np.save(tmp_path / "xf.npy", cal[:2])
    r = run_cli("simulate", tmp_path / "f.tflite", "--input", tmp_path / "xf.npy", "--check")
    assert r.returncode == 0 and "bit-exact: 2 rows" in r.stdout, r.stderr


def test_quantize_errors(tmp_path, small_cnn):
    r = run_cli("quantize", tmp_path / "missing.keras", "--calibration", "fashion-mnist",
                "--out", tmp_path / "m.tflite")
    assert r.returncode == 2 and r.stderr.startswith("error: no such file or folder")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 5), np.float32))
    r = run_cli("quantize", small_cnn, "--calibration", bad, "--out", tmp_path / "m.tflite")
    assert r.returncode == 2 and "calibration wants float inputs (N, 28, 28, 1)" in r.stderr
    assert "Traceback" not in r.stderr


def test_simulate_quantises_float_rows_for_an_int8_model(tmp_path):
    model = mlperf_model("kws_ref_model.tflite")
    g = compile_model(model).graph
    t = g.t(g.inputs[0])
    real = np.random.default_rng(2).normal(0, 20, (2, 49, 10, 1)).astype(np.float32)
    np.save(tmp_path / "real.npy", real)
    r = run_cli("simulate", model, "--input", tmp_path / "real.npy", "--output",
                tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    v = real / t.quant.s
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + t.quant.zp, -128, 127).astype(np.int8)
    assert np.array_equal(np.load(tmp_path / "y.npy"), reference_outputs(model.read_bytes(), [q])[0])


def test_evaluate_on_the_host(small_cnn, tmp_path):
    r = run_cli("evaluate", small_cnn, "--dataset", "fashion-mnist", "--limit", "300", "--json",
                tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["rows"] == 300 and e["where"] == "host" and e["bit_exact_with_tflite"] is True
    assert 0.5 < e["top1"] <= 1 and 0.5 < e["float_top1"] <= 1  # trained: far above 10%
    assert abs(e["top1"] - e["float_top1"]) < 0.05
    confusion = np.array(e["confusion"])
    assert confusion.sum() == 300 and np.trace(confusion) == round(e["top1"] * 300)
    assert "true \\ predicted" in r.stdout and "top-1" in r.stdout


def test_evaluate_with_tflm_arithmetic_checks_against_tflite_micro(small_cnn, tmp_path):
    out = tmp_path / "cnn.tflite"
    assert run_cli("quantize", small_cnn, "--calibration", "fashion-mnist", "--out",
                   out).returncode == 0
    r = run_cli("evaluate", out, "--dataset", "fashion-mnist", "--limit", "200",
                "--arithmetic", "tflm", "--json", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["arithmetic"] == "tflm" and e["bit_exact_with_tflite"] is True
    assert "bit-exact with TF Lite Micro" in r.stdout and 0.5 < e["top1"] <= 1


@needs_qemu
def test_evaluate_gives_the_same_top1_on_the_emulated_m4(small_cnn, tmp_path):
    out = tmp_path / "cnn.tflite"
    assert run_cli("quantize", small_cnn, "--calibration", "fashion-mnist", "--out",
                   out).returncode == 0
    results = {}
    for where in ("host", "mps2-an386"):
        args = ["--board", where] if where != "host" else ["--target", "cortex-m4"]
        r = run_cli("evaluate", out, "--dataset", "fashion-mnist", "--limit", "200", *args,
                    "--json", tmp_path / f"{where}.json")
        assert r.returncode == 0, r.stderr
        results[where] = json.loads((tmp_path / f"{where}.json").read_text())
    host, board = results["host"], results["mps2-an386"]
    assert board["where"] == "mps2-an386" and board["bit_exact_with_tflite"] is True
    assert host["top1"] == board["top1"] and host["confusion"] == board["confusion"]


@pytest.mark.slow
def test_keras_mobilenet_v2_quantize_and_compile(tmp_path):
    tf.keras.utils.set_random_seed(1)
    # Untrained, its logits span about 1e-6: a SOFTMAX on them would get an input scale
    # TFLite's int8 softmax rejects (beta x scale under 2^-26, which mcunet.validate names), so
    # the network ends at its logits.
    model = tf.keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                              classes=10, classifier_activation=None)
    model.save(tmp_path / "mbv2.keras")
    cal = np.random.default_rng(0).uniform(-1, 1, (16, 96, 96, 3)).astype(np.float32)
    np.save(tmp_path / "cal.npy", cal)
    r = run_cli("quantize", tmp_path / "mbv2.keras", "--calibration", tmp_path / "cal.npy",
                "--out", tmp_path / "mbv2.tflite")
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(1).integers(-128, 128, (2, 96, 96, 3)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("simulate", tmp_path / "mbv2.tflite", "--input", tmp_path / "x.npy", "--check",
                "--target", "cortex-m4")
    assert r.returncode == 0 and "bit-exact: 2 rows" in r.stdout, r.stderr


def test_tensorflow_stays_out_of_compile_plan_simulate(tmp_path):
    code = ("import sys; from mcunet.cli import main\n"
            "for args in (['plan', sys.argv[1], '--json', '--no-png'], ['simulate', sys.argv[1],"
            " '--random', '1'], ['compile', sys.argv[1], '--out', sys.argv[2]]):\n"
            "    try:\n        main(args)\n    except SystemExit: pass\n"
            "print('heavy:', [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')])\n")
    r = subprocess.run([sys.executable, "-c", code, str(mlperf_model("ad01_int8.tflite")),
                        str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout

"""`mcunet train-plan` (mcunet/trainplan.py, docs/training.md): every scheme the compiler
accepts is trained with the NumPy reference and scored on a validation split; the pick is the
most accurate that fits, checked against the table the command measured; the errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mcunet.cli import main
from mcunet.reference import reference_outputs
from mcunet.trainplan import train_plan

from .test_training import conv_model


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The small conv model (3x3 conv -> 1x1 conv -> pool -> FC 16->5) and an .npz of a new
    task for it: random int8 inputs labelled with the model's own prediction, shifted by one
    class (the head must relearn its classes)."""
    tmp = tmp_path_factory.mktemp("trainplan")
    model = tmp / "conv.tflite"
    model.write_bytes(conv_model("RELU6", seed=3))
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(500, 6, 6, 3)).astype(np.int8)
    probs = reference_outputs(str(model), [x])[0].reshape(len(x), -1)
    y = (np.argmax(probs, axis=1) + 1) % 5
    data = tmp / "task.npz"
    np.savez(data, x=x, y=y)
    return model, data


def run_json(capsys, args):
    main(["train-plan", *args, "--json"])
    return json.loads(capsys.readouterr().out)


def test_train_plan_picks_the_most_accurate_scheme_that_fits(task, capsys):
    model, data = task
    common = [str(model), "--dataset", str(data), "--samples", "200", "--val", "200",
              "--epochs", "3", "--lr", "0.01,0.05"]
    out = run_json(capsys, common + ["--sram", "256KB"])
    schemes = {s["scheme"]: s for s in out["schemes"]}
    assert list(schemes) == ["bias", "head", "last:2", "last:3"]
    assert "last:4" in out["refused"] and "the model's input" in out["refused"]["last:4"]
    for s in schemes.values():
        assert s["fits"] and s["accuracy_after"] is not None and s["lr"] in (0.01, 0.05)
        assert s["accuracy_before"] == schemes["bias"]["accuracy_before"]  # the same model
        assert s["gain_points_per_kb"] == pytest.approx(
            100 * s["gain"] / (s["training_peak_sram_bytes"] / 1024))
    best = max(schemes.values(), key=lambda s: (s["accuracy_after"], -s["training_peak_sram_bytes"]))
    assert out["pick"] == best["scheme"]
    assert schemes["last:2"]["training_peak_sram_bytes"] > schemes["head"]["training_peak_sram_bytes"]

    # A budget between head's and last:2's training peak: last:2 is not trained, the pick is
    # the better of the rest, with the same figures (same samples, order, seed).
    budget = schemes["last:2"]["training_peak_sram_bytes"] - 1
    small = run_json(capsys, common + ["--sram", str(budget)])
    s2 = {s["scheme"]: s for s in small["schemes"]}
    assert not s2["last:2"]["fits"] and s2["last:2"]["accuracy_after"] is None
    assert "1 B over the SRAM budget" in s2["last:2"]["over"]
    rest = [s2["bias"], s2["head"]]
    assert small["pick"] == max(rest, key=lambda s: (s["accuracy_after"],
                                                     -s["training_peak_sram_bytes"]))["scheme"]
    for k in ("bias", "head"):
        assert s2[k]["accuracy_after"] == schemes[k]["accuracy_after"]


def test_train_plan_table(task, capsys):
    model, data = task
    main(["train-plan", str(model), "--dataset", str(data), "--sram", "256KB", "--samples", "50",
          "--val", "50", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "train SRAM" in out and "gain/KB" in out and "last:4: refused" in out
    assert out.strip().splitlines()[-1].startswith("pick: --train ")


def test_no_scheme_fits_says_by_how_much(task, capsys):
    model, data = task
    plan = train_plan(str(model), str(data), sram="256KB", samples=20, val=20, epochs=1)
    smallest = min(s.training_peak_sram_bytes for s in plan.schemes)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["train-plan", str(model), "--dataset", str(data), "--sram", str(smallest - 100)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no training scheme fits") and len(err.splitlines()) == 1
    assert f"needs {smallest:,} B of SRAM" in err and "100 B over the SRAM budget" in err


@pytest.mark.parametrize("args, words", [
    (["--dataset", "missing.npz", "--sram", "256KB"], "no such .npz file"),
    (["--dataset", "DATA", "--board", "no-such-board"], "unknown board 'no-such-board'"),
    (["--dataset", "DATA"], "needs a budget"),
    (["--dataset", "DATA", "--sram", "256KB", "--samples", "1000"], "need 1,500"),
    (["--dataset", "DATA", "--sram", "256KB", "--lr", "fast"], "--lr 'fast'"),
    (["--dataset", "DATA", "--sram", "lots"], "lots"),
])
def test_errors_are_one_line(task, capsys, args, words):
    model, data = task
    args = [str(data) if a == "DATA" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main(["train-plan", str(model), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and len(err.splitlines()) == 1


def test_labels_beyond_the_head_are_refused(task, tmp_path, capsys):
    model, _ = task
    data = tmp_path / "ten.npz"
    np.savez(data, x=np.zeros((100, 6, 6, 3), np.int8), y=np.arange(100) % 10)
    with pytest.raises(SystemExit) as exc:
        main(["train-plan", str(model), "--dataset", str(data), "--sram", "256KB"])
    assert exc.value.code == 2
    assert "the model's head has 5 outputs" in capsys.readouterr().err


def test_train_plan_stays_off_tensorflow(task):
    model, data = task
    code = ("import sys; from mcunet.cli import main\n"
            "try:\n    main(['train-plan', sys.argv[1], '--dataset', sys.argv[2], '--sram', "
            "'256KB', '--samples', '20', '--val', '20', '--epochs', '1'])\n"
            "except SystemExit: pass\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'ray')]\n"
            "print('heavy:', bad)\n")
    r = subprocess.run([sys.executable, "-c", code, str(model), str(data)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout and "pick: --train" in r.stdout


@pytest.mark.slow
def test_bench_training_runs_on_a_tiny_case(task, tmp_path):
    """scripts/bench_training.py on the small conv model and its task: every scheme's training
    SRAM is plan --train's, TensorFlow's full back-propagation is counted and measured (about
    10 s: TensorFlow's import in the worker)."""
    model, data = task
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "scripts/bench_training.py", "--model", str(model),
                        "--dataset", str(data), "--samples", "50", "--eval", "50", "--epochs", "1",
                        "--lr", "0.05", "--json", str(out)], capture_output=True, text=True,
                       cwd=__import__("pathlib").Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr[-2000:]
    [result] = json.loads(out.read_text())
    plan = train_plan(str(model), str(data), sram="256KB", samples=20, val=20, epochs=1)
    sram = {s.scheme: s.training_peak_sram_bytes for s in plan.schemes}
    assert {s["scheme"]: s["training_peak_sram_bytes"] for s in result["schemes"]} == sram
    tf = result["tensorflow_full_backprop"]
    # 3x3x3x8 + 8, 8x16 + 16, 16x5 + 5 parameters; input, conv, conv, pool, reshape, fc, softmax
    assert tf["parameters"] == 224 + 144 + 85
    assert tf["activations"] == 108 + 72 + 144 + 16 + 16 + 5 + 5
    assert tf["counted_bytes"] == 4 * (3 * 453 + 366)
    for s in result["schemes"]:
        assert s["accuracy_after"] is not None
        assert s["tf_over_mcunet"] == pytest.approx(tf["counted_bytes"] / sram[s["scheme"]])
    assert "TF counted / mcunet" in r.stdout


def test_train_plan_measures_sparse_schemes_beside_the_named_ones(task, tmp_path, capsys):
    """--scheme FILE.json: a sparse scheme (here the head, op 4, and op 1's biases and the
    first 8 of its 16 channels' weights) is compiled for its memory and trained like the others; its
    training SRAM lies between head's and last:2's. A bad scheme is one error line."""
    model, data = task
    sparse = tmp_path / "half.json"
    sparse.write_text(json.dumps({"layers": [{"op": "head", "weights": 1, "bias": True},
                                             {"op": 1, "weights": 0.5, "bias": True}]}))
    common = [str(model), "--dataset", str(data), "--samples", "50", "--val", "50",
              "--epochs", "1", "--sram", "256KB"]
    out = run_json(capsys, common + ["--scheme", str(sparse)])
    schemes = {s["scheme"]: s for s in out["schemes"]}
    assert list(schemes) == ["bias", "head", "last:2", "last:3", str(sparse)]
    s = schemes[str(sparse)]
    assert s["fits"] and s["accuracy_after"] is not None and s["layers"] == [4, 1]
    assert s["parameters"] == 5 * 17 + 8 * 8 + 16
    assert schemes["head"]["training_peak_sram_bytes"] < s["training_peak_sram_bytes"] < \
        schemes["last:2"]["training_peak_sram_bytes"]
    sparse.write_text(json.dumps({"layers": [{"op": 2, "bias": True}]}))
    with pytest.raises(SystemExit) as exc:
        main(["train-plan", *common, "--scheme", str(sparse)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: --train {sparse}: layers[0].op: AVERAGE_POOL_2D (op 2) is not")

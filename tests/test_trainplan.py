"""`mcunet train-plan` (mcunet/trainplan.py, docs/training.md): every scheme the compiler
accepts is trained with the NumPy reference and scored on a validation split; the pick is the
most accurate that fits, checked against the table the command measured; the errors."""
from __future__ import annotations

import json
import re
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
              "--epochs", "3", "--lr", "0.01,0.05", "--no-search"]
    out = run_json(capsys, common + ["--sram", "256KB"])
    assert out["search"] is None and "--no-search" in out["notes"][0]
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
          "--val", "50", "--epochs", "1", "--no-search"])
    out = capsys.readouterr().out
    assert "train SRAM" in out and "gain/KB" in out and "last:4: refused" in out
    assert out.strip().splitlines()[-1].startswith("pick: --train ")
    assert "note: the sparse-update search was not run" in out


def test_no_scheme_fits_says_by_how_much(task, capsys):
    model, data = task
    plan = train_plan(str(model), str(data), sram="256KB", samples=20, val=20, epochs=1,
                      search=False)
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


def test_train_plan_stays_off_tensorflow(task, tmp_path):
    """The whole command, the search and a sparse pick's file included, imports no TensorFlow,
    Keras or Ray (run where a written pick cannot land in the checkout)."""
    model, data = task
    code = ("import sys; from mcunet.cli import main\n"
            "try:\n    main(['train-plan', sys.argv[1], '--dataset', sys.argv[2], '--sram', "
            "'256KB', '--samples', '20', '--val', '20', '--epochs', '1'])\n"
            "except SystemExit: pass\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'ray')]\n"
            "print('heavy:', bad)\n")
    r = subprocess.run([sys.executable, "-c", code, str(model), str(data)], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout and "pick: --train" in r.stdout
    assert "search: " in r.stdout


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
              "--epochs", "1", "--sram", "256KB", "--no-search"]
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


def test_the_search_measures_contributions_and_trains_the_best_predicted(task, tmp_path, capsys):
    """The sparse-update search: each single update of op 1 (16 channels) and op 0 (8) beside
    the head is trained (its contribution: its gain over the head alone), every combination's
    accuracy is predicted as the head's plus its parts' contributions, and the best predicted
    that fit the budget are trained for real. The budget here (2,300 B) leaves out last:2,
    last:3 and the largest single updates: nothing that does not fit is trained or picked. The
    pick (the best measured) is written to --out and compiles from that file to the same
    training memory."""
    model, data = task
    out_file = tmp_path / "pick.json"
    out = run_json(capsys, [str(model), "--dataset", str(data), "--samples", "100", "--val",
                            "100", "--epochs", "2", "--lr", "0.05", "--sram", "2300",
                            "--out", str(out_file)])
    schemes = {s["scheme"]: s for s in out["schemes"]}
    contributions = {k: s for k, s in schemes.items() if s["source"] == "contribution"}
    assert sorted(contributions) == sorted(
        ["head+op1(bias)", "head+op1(2/16)", "head+op1(4/16)", "head+op1(8/16)",
         "head+op1(16/16)", "head+op0(bias)", "head+op0(1/8)", "head+op0(2/8)", "head+op0(4/8)",
         "head+op0(8/8)"])
    head = schemes["head"]
    record = out["search"]
    assert [c["op"] for c in record["layers"]] == [1, 0]
    gains = {c["scheme"]: c["gain_over_head"] for c in record["contributions"]}
    for name, s in contributions.items():
        assert s["training_peak_sram_bytes"] > head["training_peak_sram_bytes"]
        if s["training_peak_sram_bytes"] > 2300:
            assert not s["fits"] and s["accuracy_after"] is None and name not in gains
        else:
            assert s["fits"] and gains[name] == pytest.approx(s["accuracy_after"] -
                                                             head["accuracy_after"])
    assert not contributions["head+op0(8/8)"]["fits"]  # 3,244 B
    assert not schemes["last:2"]["fits"] and not schemes["last:3"]["fits"]

    searched = [s for s in out["schemes"] if s["source"] == "searched"]
    assert 1 <= len(searched) <= 3 == record["trained"] or len(searched) == record["trained"]
    assert record["compiled"] >= len(searched)
    for s in searched:
        assert s["fits"] and s["accuracy_after"] is not None
        parts = s["scheme"].split("+op")[1:]
        assert len(s["layers"]) >= 2 and (len(parts) >= 2 or "bias+" in parts[0])
        # The prediction: the head's accuracy plus the contribution of every part.
        total = head["accuracy_after"]
        for part in parts:
            op, what = part.split("(")
            for piece in what.rstrip(")").split("+"):
                total += gains[f"head+op{op}({piece})"]
        assert s["predicted"] == pytest.approx(total)
    predictions = [s["predicted"] for s in searched]
    assert predictions == sorted(predictions, reverse=True)

    measured = [s for s in out["schemes"] if s["fits"]]
    assert all(s["accuracy_after"] is not None for s in measured)
    best = max(measured, key=lambda s: (s["accuracy_after"], -s["training_peak_sram_bytes"]))
    assert out["pick"] == best["scheme"]
    if best["sparse"] is not None:
        assert json.loads(out_file.read_text()) == out["pick_sparse"] == best["sparse"]
        assert out["pick_train"] == str(out_file)
    else:
        assert not out_file.exists() and out["pick_train"] == best["scheme"]

    # Every searched scheme's JSON, as a file for --train, is the build the search measured.
    for s in searched[:1] + [contributions["head+op1(4/16)"]]:
        path = tmp_path / "scheme.json"
        path.write_text(json.dumps(s["sparse"]))
        main(["plan", str(model), "--train", str(path), "--sram", "2300", "--json", "--no-png"])
        plan = json.loads(capsys.readouterr().out)
        assert plan["training"]["training_peak_sram_bytes"] == s["training_peak_sram_bytes"]
        assert plan["training"]["parameters"] == s["parameters"]


def test_a_sparse_pick_is_written_for_train(task, tmp_path, capsys, monkeypatch):
    """The table run: the search's summary line, and a sparse pick's scheme written to the
    default file (MODEL's name .train.json in the working directory) that the pick line names
    for --train."""
    model, data = task
    monkeypatch.chdir(tmp_path)
    main(["train-plan", str(model), "--dataset", str(data), "--samples", "100", "--val", "100",
          "--epochs", "2", "--lr", "0.05", "--sram", "1500"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    [search] = [l for l in lines if l.startswith("search: ")]
    assert re.match(r"search: [1-9]\d* contributions? measured", search)
    pick = lines[-1]
    assert pick.startswith("pick: --train ")
    name = pick.split()[2]
    if name in ("bias", "head"):
        assert not (tmp_path / "conv.train.json").exists()
    else:
        assert name == "conv.train.json" and "written to conv.train.json" in out
        scheme = json.loads((tmp_path / name).read_text())
        assert scheme["layers"][0] == {"op": "head", "weights": 1, "bias": True}
        main(["plan", str(model), "--train", name, "--sram", "1500", "--no-png"])
        assert "training" in capsys.readouterr().out.lower()


def test_no_search_when_the_backward_reaches_the_head_only(tmp_path, capsys):
    """Two fully connected layers: the backward stops under the head (it does not pass through
    a FULLY_CONNECTED), so the named schemes only, and a note why."""
    from .test_training import small_model

    model = tmp_path / "fc.tflite"
    model.write_bytes(small_model(per_channel=True, softmax=False))
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(120, 20)).astype(np.int8)
    probs = reference_outputs(str(model), [x])[0].reshape(len(x), -1)
    data = tmp_path / "fc.npz"
    np.savez(data, x=x, y=np.argmax(probs, axis=1))
    out = run_json(capsys, [str(model), "--dataset", str(data), "--samples", "40", "--val", "40",
                            "--epochs", "1", "--sram", "64KB"])
    assert out["search"] is None and "reaches the head only" in out["notes"][0]
    assert {s["source"] for s in out["schemes"]} == {"named"}


@pytest.mark.skipif(not (__import__("shutil").which("arm-none-eabi-gcc") and
                         __import__("shutil").which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm (scripts/setup.sh)")
def test_a_searched_scheme_trains_on_the_m4_as_planned(task, tmp_path, capsys):
    """From train-plan's search to the device: the best measured of the searched schemes,
    written as train-plan writes a pick, trains on the emulated M4 bit for bit with the
    reference, within the RAM planned for the board (at least the host library's figure
    train-plan measured: the board adds its kernels' scratch and stack). Planned on the host:
    this model has seven buffers on the M4, where the planner tries every order (13 s a
    compile)."""
    model, data = task
    out = run_json(capsys, [str(model), "--dataset", str(data), "--samples", "60", "--val", "60",
                            "--epochs", "1", "--lr", "0.05", "--sram", "256KB",
                            "--out", str(tmp_path / "pick.json")])
    searched = [s for s in out["schemes"] if s["source"] == "searched"]
    assert searched and all(s["fits"] for s in searched)
    best = max(searched, key=lambda s: s["accuracy_after"])
    scheme = tmp_path / "searched.json"
    scheme.write_text(json.dumps(best["sparse"]))
    report = tmp_path / "device.json"
    main(["train-on-device", str(model), "--train", str(scheme), "--board", "mps2-an386",
          "--dataset", str(data), "--steps", "6", "--eval", "3", "--lr", "0.05",
          "--json", str(report)])
    capsys.readouterr()
    r = json.loads(report.read_text())
    assert r["bit_exact"] and r["steps"] == 6
    assert r["ram"]["planned_bytes"] >= best["training_peak_sram_bytes"]
    assert 0 < r["ram"]["library_measured_bytes"] <= r["ram"]["planned_bytes"]

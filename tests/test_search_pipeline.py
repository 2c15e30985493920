"""The whole search, tiny: stage 1, supernet, evolution, fine-tune, int8 export, the Pareto
plot; its CLI errors; and (slow) a run killed mid-way that --resume finishes with the same
result as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pytest

from mcunet import api
from mcunet.compiler import compile_model

from mcunet.search.budget import default_patch
from mcunet.search.space import SearchSpace, Stage

from .conftest import run_cli

TINY_SPACE = asdict(SearchSpace(stages=(Stage(8, 1, 1), Stage(16, 2, 2), Stage(24, 2, 2)),
                                width_choices=(0.5, 1.0), resolution_choices=(16, 20)))
TINY = ["--dataset", "fashion-mnist", "--sram", "16KB", "--flash", "64KB", "--time-budget", "60",
        "--max-macs", "50M", "--train-subset", "600", "--supernet-steps", "4",
        "--finetune-steps", "4", "--generations", "2", "--population", "3", "--quiet"]


def _tiny_config(out, **kw):
    from mcunet.search.pipeline import SearchConfig

    args = dict(dataset="fashion-mnist", sram_bytes=16 * 1024, flash_bytes=64 * 1024, out=str(out),
                time_budget_s=60, seed=3, supernet_steps=4, finetune_steps=4, generations=2,
                population=3, train_subset=600, val_subset=300, recal_images=100,
                stage1_samples=3, max_macs=50_000_000, space=TINY_SPACE)
    args.update(kw)
    return SearchConfig(**args)


def test_tiny_search_end_to_end(tmp_path):
    from mcunet.search.pipeline import run_search

    out = tmp_path / "run"
    meta = run_search(_tiny_config(out), progress=False, log=lambda *a: None)
    for name in ("model.tflite", "model.json", "pareto.png", "state.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "model.json").read_text()) == json.loads(json.dumps(meta))
    # The model fits by mcunet's own plan, as the search measured it. (Flash can be a little
    # less: a barely trained net has some equal constant arrays, which mcunet stores once.)
    compiled = compile_model(out / "model.tflite", patch=default_patch())
    assert compiled.peak_sram_bytes <= 16 * 1024 and compiled.flash_bytes <= 64 * 1024
    planned = meta["measured"]["planned_from_architecture"]
    assert 0.95 * planned["flash_bytes"] <= compiled.flash_bytes <= planned["flash_bytes"]
    # The library, code included, fits the flash as `mcunet compile --flash` measures it.
    library = api.compile(out / "model.tflite", sram="16KB", flash="64KB")
    m = meta["measured"]
    assert m["library_flash_bytes"] == library.flash_total_bytes <= 64 * 1024
    assert m["code_bytes"] == library.code_bytes > 1000
    assert 0.0 <= m["test_accuracy_int8"] <= 1.0 and m["fits"]
    assert meta["input"]["resolution"] in (16, 20) and meta["input"]["resize"] == "bilinear"
    assert len(meta["classes"]) == 10 and meta["candidates"] >= 3
    # Resuming a finished search redoes nothing but the export, and gives the same model.
    before = (out / "model.tflite").read_bytes()
    meta2 = run_search(_tiny_config(out), resume=True, progress=False, log=lambda *a: None)
    assert (out / "model.tflite").read_bytes() == before
    assert meta2["measured"]["val_accuracy_int8"] == meta["measured"]["val_accuracy_int8"]
    # Resuming with other settings is refused.
    from mcunet.errors import McunetError
    with pytest.raises(McunetError, match="other settings"):
        run_search(_tiny_config(out, seed=4), resume=True, progress=False, log=lambda *a: None)


def test_speed_probe_and_deadline(monkeypatch):
    """The time-budgeted plan without TensorFlow: the probe times the steps after the first
    PROBE_STEPS (tracing), and the deadline re-plans the total from the speed it sees."""
    from mcunet.search import train as train_mod
    from mcunet.search.pipeline import PROBE_STEPS, _seconds_per_step

    calls = []

    def fake_train(stop_at):  # 2 s a step after the first PROBE_STEPS, which take 30 s
        first = calls[-1] if calls else 0
        calls.append(stop_at)
        return {"first": first, "last": stop_at,
                "seconds": 30.0 if first == 0 else 2.0 * (stop_at - first)}

    assert _seconds_per_step(fake_train, 4) == 2.0
    assert calls == [PROBE_STEPS, PROBE_STEPS + 4]

    now = [0.0]
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: now[0])
    deadline = train_mod.Deadline(at=100.0, every=10)
    assert deadline.total(0, 500) == 500  # sets its mark
    now[0] = 5.0
    assert deadline.total(5, 500) == 500  # too few steps since the mark to judge
    now[0] = 20.0  # 10 steps in 20 s: 80 s left is 40 more steps
    assert deadline.total(10, 500) == 50
    now[0] = 120.0  # past the deadline: stop after this step
    assert deadline.total(20, 50) == 21


def test_search_cli_errors(tmp_path):
    r = run_cli("search", "--dataset", "fashion-mnist", "--out", tmp_path / "a")
    assert r.returncode == 2 and r.stderr.startswith("error: give a budget"), r.stderr
    r = run_cli("search", "--dataset", tmp_path / "nope", "--sram", "32KB", "--flash", "128KB",
                "--out", tmp_path / "b")
    assert r.returncode == 2 and "unknown dataset" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("search", "--sram", "32KB", "--flash", "128KB", "--out", tmp_path / "c", "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr
    r = run_cli("search", "--sram", "lots", "--flash", "128KB", "--out", tmp_path / "d")
    assert r.returncode == 2 and "cannot read 'lots'" in r.stderr
    r = run_cli("search", "--board", "no-such-board", "--out", tmp_path / "e")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def assert_killed_search_resumes_to_the_same_model(args: list, tmp_path) -> None:
    """Run `mcunet search ARGS` whole; run it again, kill it after the supernet's first
    checkpoint, --resume it: the two models are byte-identical."""
    full = run_cli("search", *args, "--out", tmp_path / "full")
    assert full.returncode == 0, full.stderr
    cmd = [sys.executable, "-m", "mcunet", "search", *args, "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ckpt = tmp_path / "cut" / "supernet-ckpt.index"
    deadline = time.time() + 600
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the search finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert not state.get("supernet_done")
    resumed = run_cli("search", *args, "--out", tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "cut" / "model.tflite").read_bytes() == \
        (tmp_path / "full" / "model.tflite").read_bytes()


@pytest.mark.slow
def test_killed_search_resumes_to_the_same_model(tmp_path):
    """Kill the CLI during supernet training, --resume it, and compare with an uninterrupted
    run of the same seed: the models are byte-identical."""
    assert_killed_search_resumes_to_the_same_model([*TINY, "--supernet-steps", "60", "--seed", "5"],
                                                   tmp_path)

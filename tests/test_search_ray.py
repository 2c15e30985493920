"""The search on Ray (search/distributed.py): a tiny search on a local two-node cluster (Ray's
own test cluster), with one worker killed while it evaluates a candidate, finishes with a model
that fits; the same seed on the same workers gives the same model byte for byte; and the CLI's
--ray errors."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

from mcunet.compiler import compile_model
from mcunet.search.budget import default_patch

from .conftest import run_cli
from .test_search_pipeline import TINY, _tiny_config, assert_killed_search_resumes_to_the_same_model


@pytest.fixture(scope="module")
def cluster():
    # A head that runs no tasks and two nodes of one CPU each: two workers.
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    session = c.head_node.get_session_dir_path()
    yield c
    strays = [pid for pid, cmd in _processes() if f"--session-dir={session}" in cmd]
    c.shutdown()
    for pid in strays:  # the nodes' dashboard agents can outlive Cluster.shutdown
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _processes():
    """(pid, command line) of every process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            yield int(entry.name), cmd


def _task_processes(name: str) -> list[int]:
    """Pids of the Ray workers running a task of this function now (Ray titles a busy worker
    process ray::FUNCTION)."""
    found = []
    for pid, cmd in _processes():
        if cmd.startswith(f"ray::{name}"):
            found.append(pid)
    return found


def _search(cluster, out, **kw):
    from mcunet.search.pipeline import run_search

    return run_search(_tiny_config(out, ray=cluster.address, supernet_steps=8, **kw),
                      progress=False,
                      log=lambda *a: None)


def test_ray_search_survives_a_killed_worker_and_reproduces(cluster, tmp_path):
    result = {}

    def run():
        try:
            result["meta"] = _search(cluster, tmp_path / "killed")
        except BaseException as exc:  # reported by the main thread
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    # Kill a supernet replica while it trains, then a worker while it evaluates a candidate.
    killed = []
    targets = ["_SupernetWorker", "_evaluate_task"]
    deadline = time.time() + 300
    while targets and thread.is_alive() and time.time() < deadline:
        pids = _task_processes(targets[0])
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(targets.pop(0))
        # A scan of /proc takes a few ms: every 0.1 s keeps it off the cores the search needs
        # and still lands well inside a candidate's evaluation (several seconds).
        time.sleep(0.1)
    thread.join(timeout=300)
    assert killed == ["_SupernetWorker", "_evaluate_task"], killed
    assert not thread.is_alive(), "the search did not finish"
    assert "error" not in result, repr(result.get("error"))
    meta = result["meta"]
    out = tmp_path / "killed"

    # It fits, by mcunet's own plan of the exported model.
    m = meta["measured"]
    assert m["fits"] and m["peak_sram_bytes"] <= 16 * 1024 and m["flash_bytes"] <= 64 * 1024
    compiled = compile_model(out / "model.tflite", patch=default_patch())
    assert compiled.peak_sram_bytes <= 16 * 1024 and compiled.flash_bytes <= 64 * 1024
    # Two workers ran it (two supernet replicas, started again once); the top three candidates were fine-tuned and the best kept.
    assert meta["distributed"]["tasks_at_once"] == 2
    state = json.loads((out / "state.json").read_text())
    assert state["supernet"]["replicas"] == 2 and state["supernet"]["steps"] == 8
    top = meta["distributed"]["finetuned"]
    assert len(top) == 3 and len({t["arch_key"] for t in top}) == 3
    assert meta["arch_key"] in {t["arch_key"] for t in top}
    assert max(t["val_accuracy"] for t in top) == \
        next(t["val_accuracy"] for t in top if t["arch_key"] == meta["arch_key"])
    for i in range(3):
        assert (out / f"finetune-{i}" / "finetune-ckpt.index").is_file()

    # The same seed on the same two workers, nothing killed: the same search, byte for byte.
    again = _search(cluster, tmp_path / "again")
    assert (tmp_path / "again" / "model.tflite").read_bytes() == (out / "model.tflite").read_bytes()
    first = json.loads((out / "state.json").read_text())
    second = json.loads((tmp_path / "again" / "state.json").read_text())
    assert first["evolution"] == second["evolution"] and first["stage1"] == second["stage1"]
    assert again["measured"]["val_accuracy_int8"] == m["val_accuracy_int8"]


def test_ray_cli_errors(tmp_path):
    args = ["search", *TINY, "--out", tmp_path / "a"]
    r = run_cli(*args, "--ray", "127.0.0.1:1")
    assert r.returncode == 2 and r.stderr.startswith("error: --ray 127.0.0.1:1: cannot reach"), r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    r = run_cli(*args, "--ray", "nonsense")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr and "Traceback" not in r.stderr
    # Without Ray installed (an import of it that fails, as on a machine without the extra).
    fake = tmp_path / "noray"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('No module named ray')\n")
    r = run_cli(*args, "--ray", "auto", env={"PYTHONPATH": str(fake)})
    assert r.returncode == 2 and "pip install 'mcunet[ray]'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # Without --ray nothing imports Ray.
    r = subprocess.run([sys.executable, "-c", "import sys, mcunet.cli, mcunet.search.cli, "
                        "mcunet.search.pipeline, mcunet.search.evolution; "
                        "print('ray' in sys.modules)"], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


def test_data_parallel_replicas_apply_the_same_averaged_update(tmp_path):
    """The data-parallel scheme without Ray (its replicas as plain objects, the driver's loop
    as is): one replica trains what the in-process training trains; two replicas keep equal
    weights, different from one replica's (each normalises its own shard); replica 0's
    checkpoint holds them."""
    import numpy as np

    from mcunet.search.data import load_dataset
    from mcunet.search.distributed import SupernetTrainer, _SupernetWorker
    from mcunet.search.space import SearchSpace, Stage
    from mcunet.search.supernet import Supernet
    from mcunet.search.train import SUPERNET_LR, setup_tf, train_supernet

    setup_tf()
    space = SearchSpace(stages=(Stage(8, 1, 1), Stage(16, 1, 2)), width_choices=(1.0,),
                        resolution_choices=(16,))
    data = load_dataset("fashion-mnist").train.subset(300, 0)

    class Local(SupernetTrainer):  # the replicas in this process
        def __init__(self, world, folder):
            self.ray = type("R", (), {"put": staticmethod(lambda v: v)})
            self.workers = [_SupernetWorker(space, 0, r, world, data, 16, str(folder),
                                            SUPERNET_LR, 2)
                            for r in range(world)]
            self.world = world

        def _all(self, method, *args):
            return [getattr(w, method)(*args) for w in self.workers]

    def weights(net):
        return {k: v.numpy() for k, v in net.vars.items() if v.trainable}

    ref = Supernet(space, seed=0)
    train_supernet(ref, data, 16, 5, 0, tmp_path / "ref", lr=SUPERNET_LR, warmup=1)
    runs = {}
    for name, world in (("one", 1), ("two", 2)):
        trainer = Local(world, tmp_path / name)
        result = trainer._train(5, SUPERNET_LR, 1, None, None, 50, None)
        assert result["last"] == 5 and result["replicas"] == world
        w = [weights(r.net) for r in trainer.workers]
        assert all(np.array_equal(w[0][k], other[k]) for other in w[1:] for k in w[0])
        restored = Supernet(space, seed=0)  # from replica 0's checkpoint, as the driver does
        train_supernet(restored, data, 16, 0, 0, tmp_path / name, warmup=1)
        assert all(np.array_equal(weights(restored)[k], w[0][k]) for k in w[0])
        runs[name] = w[0]
    moved = max(float(np.abs(weights(ref)[k] - weights(Supernet(space, seed=0))[k]).max())
                for k in runs["one"])
    assert moved > 1e-3
    assert max(float(np.abs(runs["one"][k] - weights(ref)[k]).max()) for k in runs["one"]) \
        < 0.1 * moved
    assert not all(np.array_equal(runs["two"][k], runs["one"][k]) for k in runs["two"])


def test_compute_cap_follows_the_workers_speed(cluster):
    """Without --max-macs, a Ray search's cap is the in-process one scaled by one task's
    measured training speed (every task slot measures at once; the slowest counts)."""
    import ray

    from mcunet.search.distributed import RayEngine
    from mcunet.search.pipeline import MACS_PER_BUDGET_SECOND, REFERENCE_MACS_IMAGES

    engine = RayEngine(cluster.address)
    try:
        cap, measured = engine.measure_cap(600, steps=2, warmup=1)  # a short probe
    finally:
        engine.shutdown()
    assert not ray.is_initialized()
    rates = measured["images_per_second"]
    assert len(rates) == 2 and all(r > 0 for r in rates)
    scale = min(rates) * measured["probe_macs"] / REFERENCE_MACS_IMAGES
    assert abs(cap - MACS_PER_BUDGET_SECOND * 600 * scale) <= 0.01 * cap + 1


@pytest.mark.slow
def test_killed_ray_driver_resumes_to_the_same_model(cluster, tmp_path):
    """Kill the driver (`mcunet search --ray`) after the data-parallel supernet's first
    checkpoint, --resume it on the same two workers: the same model as an uninterrupted run."""
    assert_killed_search_resumes_to_the_same_model(
        [*TINY, "--supernet-steps", "60", "--seed", "5", "--ray", cluster.address], tmp_path)


@pytest.mark.slow
def test_ray_budget_sweep(cluster, tmp_path):
    """A sweep on the two workers (about a minute): one data-parallel supernet at both budgets'
    resolutions, each budget's candidates evaluated and fine-tuned as Ray tasks, a model per
    budget that fits it."""
    from mcunet.search.cli import _budgets
    from mcunet.search.sweep import run_sweep

    from .test_search_sweep import FLASH, NAMES, SRAM

    out = tmp_path / "sweep"
    summary = run_sweep(_tiny_config(out, ray=cluster.address, finetune_top=2),
                        _budgets((), SRAM, FLASH), progress=False, log=lambda *a: None)
    state = json.loads((out / "state.json").read_text())
    assert state["supernet"]["replicas"] == 2
    assert summary["supernet"]["resolutions"] == [16, 20]
    for row in summary["budgets"]:
        assert row["fits"] and row["peak_sram_bytes"] <= row["sram_budget_bytes"]
        meta = json.loads((out / row["name"] / "model.json").read_text())
        assert meta["distributed"]["tasks_at_once"] == 2 and len(meta["distributed"]["finetuned"]) == 2
        compiled = compile_model(out / row["name"] / "model.tflite", patch=default_patch())
        assert compiled.peak_sram_bytes <= row["sram_budget_bytes"]
    assert [r["name"] for r in summary["budgets"]] == NAMES

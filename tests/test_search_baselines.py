"""The baselines of scripts/bench_search.py: the scaled MobileNetV2 (the largest that fits, by
mcunet's plan) trained and exported as a search's winner is, and random search (the same
number of candidates as evolution, none bred from another)."""
import json
import random

import pytest

from mcunet.budget import Budget
from mcunet.compiler import compile_model
from mcunet.errors import McunetError
from mcunet.search.baselines import (NoBaselineFits, mobilenetv2, run_baseline,
                                     scaled_mobilenetv2)
from mcunet.search.budget import CostCache, default_patch
from mcunet.search.evolution import evolve
from mcunet.search.space import SearchSpace

from .test_search_pipeline import TINY_SPACE, _tiny_config


def test_scaled_mobilenetv2_is_the_largest_that_fits():
    space = SearchSpace.from_dict(TINY_SPACE)
    budget = Budget(12 * 1024, 48 * 1024, max_macs=3_000_000)
    costs = CostCache(space, patch="none")
    arch, tried = scaled_mobilenetv2(space, budget, costs)
    assert set(arch.kernels) == {3} and set(arch.expands) == {6}
    assert arch.depths == tuple(s.max_depth for s in space.stages)
    fitting = [t for t in tried if t["fits"]]
    assert fitting and len(fitting) < len(tried)  # the budget binds
    assert costs(arch, budget).macs == max(t["macs"] for t in fitting)
    assert all(t["peak_sram_bytes"] <= budget.sram_bytes and t["flash_bytes"] <= budget.flash_bytes
               and t["macs"] <= budget.max_macs for t in fitting)
    assert arch == mobilenetv2(space, arch.width, arch.resolution)
    with pytest.raises(NoBaselineFits, match="no scaled MobileNetV2 fits 64 B SRAM") as e:
        scaled_mobilenetv2(space, Budget(64, 48 * 1024), costs)
    # The error says what the smallest pair tried needs, so a reader sees by how much it misses.
    least_sram = min(t["peak_sram_bytes"] for t in e.value.tried)
    least_flash = min(t["flash_bytes"] + t["code_bytes"] for t in e.value.tried)
    assert least_sram > 64 and not any(t["fits"] for t in e.value.tried)
    assert f"the least SRAM {least_sram} B" in str(e.value)
    assert f"the least flash is {least_flash} B" in str(e.value)


def test_random_search_draws_as_many_candidates_none_bred():
    space = SearchSpace.from_dict(TINY_SPACE)
    budget = Budget(16 * 1024, 64 * 1024, max_macs=50_000_000)
    costs = CostCache(space, patch="none")

    def fitness(arch):  # deterministic, favouring wide nets: evolution's children follow it
        return random.Random(space.key(arch)).random() * 0.1 + arch.width

    evo = evolve(space, budget, costs, fitness, 3, population=6, parents=2, seed=1)
    rnd = evolve(space, budget, costs, fitness, 3, population=6, parents=2, seed=1,
                 strategy="random")
    assert len(rnd.history) == len(evo.history)
    # The first generation is the same draw; after it, evolution's candidates are bred from
    # the kept parents and random search's are not.
    first = [space.key(c.arch) for c in evo.history if c.generation == 0]
    assert [space.key(c.arch) for c in rnd.history if c.generation == 0] == first
    later_evo = {space.key(c.arch) for c in evo.history if c.generation > 0}
    later_rnd = {space.key(c.arch) for c in rnd.history if c.generation > 0}
    assert later_evo != later_rnd
    assert all(costs(c.arch, budget).fits(budget) for c in rnd.history)
    with pytest.raises(McunetError, match="unknown search strategy 'grid'"):
        evolve(space, budget, costs, fitness, 1, strategy="grid")


def test_baseline_trains_exports_and_fits(tmp_path):
    out = tmp_path / "mnv2"
    meta = run_baseline(_tiny_config(out, sram_bytes=12 * 1024, max_macs=3_000_000),
                        progress=False, log=lambda *a: None)
    assert meta["baseline"] == "mobilenetv2-scaled" and meta["train"]["steps"] == 4
    assert json.loads((out / "model.json").read_text()) == json.loads(json.dumps(meta))
    compiled = compile_model(out / "model.tflite", patch=default_patch())
    assert compiled.peak_sram_bytes <= 12 * 1024 and compiled.flash_bytes <= 64 * 1024
    assert 0.0 <= meta["measured"]["test_accuracy_int8"] <= 1.0 and meta["measured"]["fits"]
    with pytest.raises(McunetError, match="already holds a model"):
        run_baseline(_tiny_config(out), progress=False, log=lambda *a: None)


def test_bench_search_stage1_only_reports_the_choice_per_budget():
    """The memory-only mode of scripts/bench_search.py runs (it had imported a helper that had
    moved) and prints stage 1's pick for each SRAM budget, one that the space offers."""
    import re
    import subprocess
    import sys

    from mcunet.search.space import default_space

    from .conftest import ROOT

    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_search.py"), "--stage1-only",
                        "--sram", "8", "--flash", "64KB", "--time-budget", "300"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = re.search(r"8 KB SRAM: stage 1 -> width ([\d.]+), resolution (\d+) \((\d+)/(\d+) fit",
                  r.stdout)
    assert m, r.stdout
    space = default_space()
    assert float(m.group(1)) in space.width_choices
    assert int(m.group(2)) in space.resolution_choices
    assert 1 <= int(m.group(3)) <= int(m.group(4))


def test_bench_search_report_reads_the_record_and_computes_the_margin(tmp_path):
    """`bench_search.py --baselines --report` tabulates the runs recorded so far (a benchmark of
    hours spans sessions): mean and spread per method over the seeds present, the margin only
    where every method has a run, and runs nothing."""
    import subprocess
    import sys

    from .conftest import ROOT

    def record(budget, method, seed, acc):
        path = tmp_path / "rec" / "60s" / budget / f"{method}-seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"arch_key": f"{method}{seed}", "measured": {
            "test_accuracy_int8": acc, "peak_sram_bytes": 1000 + seed,
            "library_flash_bytes": 9000 + seed, "macs": 2e6}}))

    for seed, accs in enumerate([(0.90, 0.905, 0.912), (0.91, 0.90, 0.918)]):
        for method, acc in zip(("mobilenetv2", "random", "mcunet"), accs):
            record("4KB-32KB", method, seed, acc)
    record("8KB-64KB", "mcunet", 0, 0.95)  # a cell with one method only: no margin
    # A budget no scaled MobileNetV2 fits: its record is every pair tried, the margin is over
    # random search alone and says so.
    for seed, accs in enumerate([(0.80, 0.83), (0.82, 0.85)]):
        path = tmp_path / "rec" / "60s" / "2KB-16KB" / f"mobilenetv2-seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fits": False, "tried": [
            {"peak_sram_bytes": 3000, "flash_bytes": 9000, "code_bytes": 8000},
            {"peak_sram_bytes": 2500, "flash_bytes": 9500, "code_bytes": 9000}]}))
        for method, acc in zip(("random", "mcunet"), accs):
            record("2KB-16KB", method, seed, acc)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_search.py"), "--baselines",
                        "--report", "--record", str(tmp_path / "rec"), "--out",
                        str(tmp_path / "out"), "--time-budget", "60", "--budgets",
                        "4:32,8:64,2:16"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "running" not in r.stdout
    # mcunet's mean 91.50 over the better baseline's (mobilenetv2 and random: 90.50, 90.25)
    assert "mcunet over the better baseline: +1.00 points (target +0.5: met)" in r.stdout
    assert r.stdout.count("mcunet over the better baseline") == 2
    assert ("2 KB /  16 KB  mobilenetv2  does not fit: the least it needs is 2500 B SRAM and "
            "17000 B flash (with the code)") in r.stdout
    # mcunet 84.00 over random's 81.00
    assert ("mcunet over the better baseline: +3.00 points (target +0.5: met, mobilenetv2 "
            "does not fit)") in r.stdout
    assert "8 KB /  64 KB  mobilenetv2  (no run recorded)" in r.stdout
    rows = json.loads((tmp_path / "out" / "baselines.json").read_text())
    mcunet4 = next(x for x in rows if x["sram_kb"] == 4 and x["method"] == "mcunet")
    assert mcunet4["test_accuracy_int8"] == pytest.approx([91.2, 91.8])
    assert mcunet4["peak_sram_bytes"] == 1001 and mcunet4["library_flash_bytes"] == 9001
    mnv2_2 = next(x for x in rows if x["sram_kb"] == 2 and x["method"] == "mobilenetv2")
    assert mnv2_2 == {"sram_kb": 2, "flash_kb": 16, "method": "mobilenetv2", "fits": False,
                      "least_peak_sram_bytes": 2500, "least_library_flash_bytes": 17000}


def test_bench_search_records_a_baseline_that_does_not_fit(tmp_path):
    """Where no scaled MobileNetV2 fits (here 1 KB / 8 KB: its full depth is more code than
    8 KB), the benchmark records that as the cell's result, every pair tried with its cost,
    instead of stopping, and the table says so; the other methods' runs are taken from the
    record (written here), so only the baseline runs."""
    import subprocess
    import sys

    from .conftest import ROOT

    for method in ("random", "mcunet"):
        path = tmp_path / "rec" / "60s" / "1KB-8KB" / f"{method}-seed0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"arch_key": method, "measured": {
            "test_accuracy_int8": 0.5, "peak_sram_bytes": 900, "library_flash_bytes": 8000,
            "macs": 1e5}}))
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_search.py"), "--baselines",
                        "--record", str(tmp_path / "rec"), "--out", str(tmp_path / "out"),
                        "--time-budget", "60", "--budgets", "1:8", "--seeds", "0"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "1 KB / 8 KB, mobilenetv2, seed 0: no scaled MobileNetV2 fits 1024 B SRAM" in r.stdout
    rec = json.loads((tmp_path / "rec" / "60s" / "1KB-8KB" / "mobilenetv2-seed0.json").read_text())
    assert rec["fits"] is False and rec["tried"] and not any(t["fits"] for t in rec["tried"])
    least = min(t["flash_bytes"] + t["code_bytes"] for t in rec["tried"])
    assert least > 8 * 1024
    assert "mobilenetv2  does not fit: the least it needs is" in r.stdout
    assert f" {least} B flash (with the code)" in r.stdout
    assert "mcunet over the better baseline: +0.00 points (target +0.5: not met, mobilenetv2 " \
           "does not fit)" in r.stdout

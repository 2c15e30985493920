"""Budget sweeps (search/sweep.py): one supernet trained once and specialised for several
budgets; a model per budget that fits it by `mcunet plan --patch auto`; a killed sweep resumed
without training the supernet again or redoing a finished budget; the CLI's errors."""
import json

import pytest

from .conftest import run_cli
from .test_search_pipeline import TINY, _tiny_config

# Budgets of the tiny space whose stage 1 chooses different widths and resolutions:
# 3 KB / 28 KB -> width 0.5 at 16x16, 16 KB / 64 KB -> width 1.0 at 20x20 (flash: weights,
# constants and about 12 KB of the host's code).
SRAM, FLASH = "3KB,16KB", "28KB,64KB"
NAMES = ["sram-3KB", "sram-16KB"]


class Killed(Exception):
    pass


def test_sweep_trains_one_supernet_and_resumes(tmp_path, monkeypatch):
    from mcunet.search import sweep as sweep_mod
    from mcunet.search import train as train_mod
    from mcunet.search.cli import _budgets

    budgets = _budgets((), SRAM, FLASH)
    assert [b.name for b in budgets] == NAMES
    names = [b.name for b in _budgets((), "8KB,8KB,16KB", "64KB,128KB,128KB")]
    assert names == ["sram-8KB-flash-64KB", "sram-8KB-flash-128KB", "sram-16KB-flash-128KB"]
    assert [b.name for b in _budgets(("mps2-an386", "mps2-an500"), "32KB", "128KB")] == \
        ["mps2-an386", "mps2-an500"]
    trained = []
    real_train = train_mod.train_supernet

    def counting(net, data, resolution, steps, *a, **kw):
        if steps:
            trained.append(resolution)
        return real_train(net, data, resolution, steps, *a, **kw)
    monkeypatch.setattr(train_mod, "train_supernet", counting)

    real_specialise = sweep_mod.specialise

    def killed_in_the_second(*a, **kw):  # the driver dies after the second budget's evolution
        if kw["label"] == NAMES[1]:
            def log(msg):
                if msg.startswith(f"{NAMES[1]}: evolution:"):
                    raise Killed
            a = a[:11] + (log,) + a[12:]
        return real_specialise(*a, **kw)
    monkeypatch.setattr(sweep_mod, "specialise", killed_in_the_second)

    out = tmp_path / "sweep"
    cfg = _tiny_config(out)
    with pytest.raises(Killed):
        sweep_mod.run_sweep(cfg, budgets, progress=False, log=lambda *a: None)
    first = out / NAMES[0] / "model.tflite"
    assert first.is_file() and not (out / NAMES[1] / "model.tflite").exists()
    assert trained == [(16, 20)]  # once, at both budgets' resolutions in turn
    before = first.read_bytes(), first.stat().st_mtime_ns

    monkeypatch.setattr(sweep_mod, "specialise", real_specialise)
    logs = []
    summary = sweep_mod.run_sweep(cfg, budgets, resume=True, progress=False, log=logs.append)
    assert trained == [(16, 20)], "the resumed sweep trained the supernet again"
    assert f"{NAMES[0]}: done before, kept ({first})" in logs
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    state = json.loads((out / NAMES[1] / "state.json").read_text())
    assert state["done"] and state["evolution_done"]

    assert summary == json.loads((out / "sweep.json").read_text())
    assert summary["supernet"]["widths"] == [0.5, 1.0]
    assert summary["supernet"]["resolutions"] == [16, 20] and summary["supernet"]["steps"] == 4
    rows = {r["name"]: r for r in summary["budgets"]}
    assert list(rows) == NAMES
    for b in budgets:
        folder = out / b.name
        for name in ("model.tflite", "model.json", "pareto.png", "state.json"):
            assert (folder / name).is_file(), (b.name, name)
        meta = json.loads((folder / "model.json").read_text())
        assert meta["budget"]["sram_bytes"] == b.sram_bytes and meta["measured"]["fits"]
        # It fits its budget by `mcunet plan --patch auto`, whose figures the table shows.
        r = run_cli("plan", folder / "model.tflite", "--patch", "auto", "--json", "--no-png")
        assert r.returncode == 0, r.stderr
        plan = json.loads(r.stdout)
        assert plan["peak_sram_bytes"] <= b.sram_bytes and plan["flash_bytes"] <= b.flash_bytes
        row = rows[b.name]
        assert (row["peak_sram_bytes"], row["flash_bytes"]) == \
            (plan["peak_sram_bytes"], plan["flash_bytes"])
        assert row["fits"] and row["arch_key"] == meta["arch_key"]
        assert 0.0 <= row["test_accuracy_int8"] <= 1.0
    assert rows[NAMES[0]]["resolution"] == 16 and rows[NAMES[1]]["resolution"] == 20
    assert json.loads((out / NAMES[0] / "model.json").read_text())["arch"]["width"] == 0.5
    from mcunet.search.sweep import summary_table
    table = summary_table(summary)
    assert len(table) == 3 and table[0].startswith("budget") and NAMES[1] in table[2]


def test_sweep_cli_errors(tmp_path):
    def search(*args):
        r = run_cli("search", *TINY[:2], *args, *TINY[6:], "--out", tmp_path / "x")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        return r.stderr

    err = search("--sram", "8KB,16KB,32KB", "--flash", "64KB,128KB")
    assert "differ in length (--sram 3, --flash 2)" in err
    err = search("--sram", "8KB,8192B", "--flash", "64KB")
    assert "budgets 1 and 2 are the same (8KB SRAM, 64KB flash" in err
    err = search("--sram", "1KB,16KB", "--flash", "64KB")
    assert err.startswith("error: budget sram-1KB (1 KB SRAM, 64 KB flash): no sampled network "
                          "fits") and "B of SRAM (budget 1,024, " in err and " B over)" in err
    # Found after the first budget's stage 1: nothing saved, nothing to --resume.
    from mcunet.errors import McunetError
    from mcunet.search.cli import _budgets
    from mcunet.search.sweep import run_sweep
    with pytest.raises(McunetError, match=r"^budget sram-1KB \(1 KB SRAM, 64 KB flash\): "):
        run_sweep(_tiny_config(tmp_path / "y"), _budgets((), "16KB,1KB", "64KB"),
                  progress=False, log=lambda *a: None)
    assert not (tmp_path / "y" / "state.json").exists()

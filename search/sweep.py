"""Budget sweeps: one supernet trained once, specialised for several budgets (once-for-all).

`mcunet search --sram 8KB,16KB,32KB --flash 64KB,128KB,128KB ...` (or several `--board`):

  stage 1 per budget  ->  ONE supernet  ->  per budget: evolution, fine-tune, int8 export

Stage 1 chooses every budget's width and resolution as a single search would; the supernet is
trained once on the space that holds all of them (the chosen widths, and the chosen
resolutions in turn, one a training step); then each budget's evolution searches its own
(width, resolution) on those shared weights, and its winner is fine-tuned and exported in
OUT/NAME/ exactly as a single search writes OUT/. The layer-by-layer plans of candidates are
shared between the budgets of one core (search/budget.py, CostCache.layers); patch-based plans
are made for one SRAM budget and stay with it.

Time: the supernet gets SUPERNET_SHARE of the whole --time-budget; what is left after it is
shared equally by the budgets not yet done (each budget's share fixed when it starts, so a
budget that finishes early leaves its time to the next). Each budget is otherwise searched as
a single search of time_budget / N seconds: its compute cap, patch-plan count and evolution
share are those of that search.

OUT/state.json holds the sweep (stage 1 of every budget, the supernet's plan, the shared
plans); OUT/supernet-ckpt its weights; OUT/NAME/state.json each budget's progress; a killed
sweep resumes without training the supernet again or redoing a finished budget.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from mcunet.errors import McunetError

from .budget import CostCache, default_patch, layers_from_dict, layers_to_dict
from .pipeline import (Clock, Data, SearchConfig, State, budget_line, cap_line, dataset_and_space,
                       dataset_line, patch_plans, run_stage1, share_supernet, specialise,
                       supernet_phase, _check_resume)


@dataclass(frozen=True)
class SweepBudget:
    """One budget of a sweep and the name of its output folder."""
    name: str
    sram_bytes: int
    flash_bytes: int
    board: str | None = None
    clock_hz: int | None = None

    def describe(self) -> str:
        return (f"{self.sram_bytes / 1024:g} KB SRAM, {self.flash_bytes / 1024:g} KB flash"
                + (f", {self.board}" if self.board else ""))


def size_name(n: int) -> str:
    return f"{n // 1024}KB" if n % 1024 == 0 else f"{n}B"


def split_list(text: str | None) -> list[str]:
    """'8KB,16KB' -> ['8KB', '16KB'] (None -> [])."""
    return [] if text is None else [t.strip() for t in str(text).split(",")]


def sweep_budgets(boards: list[str | None], srams: list[str | None], flashes: list[str | None],
                  resolve) -> list[SweepBudget]:
    """The budgets of --board (repeated) and --sram/--flash (comma-separated lists): lists of
    one apply to every budget, others must be as long as each other. resolve(board, sram,
    flash) -> (SRAM bytes, flash bytes, clock Hz) as for a single search. Duplicates are an
    error; each budget is named by what tells it apart in the sweep: its board where boards
    differ, its SRAM where SRAMs differ, its flash where those do not suffice (sram-8KB,
    sram-32KB-flash-64KB, nucleo-f411re, ...)."""
    given = {"--board": boards, "--sram": srams, "--flash": flashes}
    n = max(1, max(len(v) for v in given.values()))
    long = {k: len(v) for k, v in given.items() if len(v) > 1}
    if len(set(long.values())) > 1:
        raise McunetError("the budget lists differ in length ("
                          + ", ".join(f"{k} {v}" for k, v in long.items())
                          + "): give each list one entry per budget, or one for all")

    def nth(values, i):
        return values[i] if len(values) == n else (values[0] if values else None)

    rows = []
    for i in range(n):
        board, sram, flash = nth(boards, i), nth(srams, i), nth(flashes, i)
        sram_b, flash_b, clock = resolve(board, sram, flash)
        rows.append((board, sram_b, flash_b, clock))
    from mcunet.boards import get_board

    def same(r):  # what the search sees of a budget
        return (r[1], r[2], get_board(r[0]).core if r[0] else None, r[3])
    for i, r in enumerate(rows):
        for j in range(i):
            if same(rows[j]) == same(r):
                raise McunetError(
                    f"budgets {j + 1} and {i + 1} are the same ({size_name(r[1])} SRAM, "
                    f"{size_name(r[2])} flash{', ' + r[0] if r[0] else ''}): give each budget once")
    vary_board = len({r[0] for r in rows}) > 1
    vary_sram = len({r[1] for r in rows}) > 1
    # flash only where board and SRAM do not tell the budgets apart
    vary_flash = len({r[2] for r in rows}) > 1 and \
        len({(r[0] if vary_board else None, r[1] if vary_sram else None) for r in rows}) < len(rows)
    budgets = []
    for board, sram_b, flash_b, clock in rows:
        parts = ([board] if vary_board else []) + \
            ([f"sram-{size_name(sram_b)}"] if vary_sram else []) + \
            ([f"flash-{size_name(flash_b)}"] if vary_flash else [])
        if not parts:  # boards of one core that differ only in clock
            parts = [f"{board}-{clock}"]
        budgets.append(SweepBudget("-".join(parts), sram_b, flash_b, board, clock))
    if len({b.name for b in budgets}) != len(budgets):  # boards with equal names and memories
        budgets = [replace(b, name=f"{i + 1}-{b.name}") for i, b in enumerate(budgets)]
    return budgets


def budget_config(base: SearchConfig, b: SweepBudget, n: int) -> SearchConfig:
    """A budget's search: base's settings, its budget and folder, and 1/n of the time budget
    (which sets its compute cap and patch-plan count as for a single search of that length)."""
    return replace(base, sram_bytes=b.sram_bytes, flash_bytes=b.flash_bytes, board=b.board,
                   clock_hz=b.clock_hz, out=str(Path(base.out) / b.name),
                   time_budget_s=base.time_budget_s / n)


def run_sweep(base: SearchConfig, budgets: list[SweepBudget], resume: bool = False,
              progress: bool = True, log=print) -> dict:
    """Run (or resume) a sweep; returns the summary also written to OUT/sweep.json."""
    engine = None
    if base.ray:
        _check_resume(base, resume)
        from .distributed import RayEngine
        engine = RayEngine(base.ray, base.ray_cpus, base.ray_gpus)
    try:
        return _run_sweep(base, budgets, resume, progress, log, engine)
    finally:
        if engine is not None:
            engine.shutdown()


def _run_sweep(base: SearchConfig, budgets: list[SweepBudget], resume: bool, progress: bool, log,
               engine) -> dict:
    from .supernet import Supernet
    from .train import setup_tf

    if len({b.name for b in budgets}) != len(budgets):
        raise McunetError("the sweep's budgets need distinct names")
    out = Path(base.out)
    _check_resume(base, resume)
    if resume and "sweep" not in json.loads((out / "state.json").read_text()):
        raise McunetError(f"{out} holds a single-budget search, not a sweep; resume it with one "
                          "budget, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    state = State(out)
    n = len(budgets)
    if engine is not None and base.max_macs is None:  # measured once, for a budget's share
        if resume and state.get("throughput"):
            base = replace(base, max_macs=state["throughput"]["max_macs"])
        else:
            cap, measured = engine.measure_cap(base.time_budget_s / n)
            log(cap_line(cap, measured))
            base = replace(base, max_macs=cap)
            state.data["throughput"] = measured
    cfgs = [budget_config(base, b, n) for b in budgets]
    fingerprint = {"budgets": [b.name for b in budgets], "configs": [c.fingerprint() for c in cfgs]}
    if resume and state.get("config") != fingerprint:
        raise McunetError(f"{out} holds a sweep with other settings; resume it with the same "
                          "dataset, budgets, seed and time budget (or --max-macs)")
    if resume and state.get("done") and (out / "sweep.json").exists():
        return json.loads((out / "sweep.json").read_text())
    state.data.setdefault("config", fingerprint)
    state.data["sweep"] = True
    clock = Clock(base.time_budget_s, state.get("spent_s", 0.0))

    def save_time():
        state.data["spent_s"] = clock.spent
        state.save()

    ds, train, space = dataset_and_space(base)
    log(f"{dataset_line(ds, train)}; a sweep of {n} budgets, one supernet; "
        f"planner patch mode {default_patch()}")
    if engine is not None:
        log(engine.describe())

    # -- stage 1 of every budget, sharing the layer-by-layer plans of each core -----------------
    layers = {t: layers_from_dict(d) for t, d in state.get("layers", {}).items()}
    costs = {}
    for b, cfg in zip(budgets, cfgs):
        costs[b.name] = c = CostCache(space, patch_plans=patch_plans(cfg.time_budget_s),
                                      target=cfg.target,
                                      layers=layers.setdefault(cfg.target.name, {}))
        bstate = State(Path(cfg.out)) if (Path(cfg.out) / "state.json").exists() else None
        if bstate is not None and bstate.get("costs"):
            c.load(bstate["costs"])
        elif state.get("stage1_costs", {}).get(b.name):
            c.load(state["stage1_costs"][b.name])

    def save_layers():
        state.data["layers"] = {t: layers_to_dict(d) for t, d in layers.items()}

    stage1 = dict(state.get("stage1", {}))
    for b, cfg in zip(budgets, cfgs):  # every budget's before anything is saved: a budget
        if b.name not in stage1:       # that nothing fits leaves no sweep to --resume
            try:
                stage1[b.name] = run_stage1(cfg, space, costs[b.name], engine, progress,
                                            label=f"{b.name}: stage 1")
            except McunetError as exc:
                raise McunetError(f"budget {b.name} ({b.describe()}): {exc}") from None
    if stage1 != state.get("stage1"):
        state.data["stage1"] = stage1
        state.data["stage1_costs"] = {b.name: costs[b.name].to_dict(layers=False)
                                      for b in budgets}
        save_layers()
        save_time()
    for b, cfg in zip(budgets, cfgs):
        s = stage1[b.name]
        log(f"{b.name}: {budget_line(cfg.budget)}; stage 1: width {s['width']:g}, resolution "
            f"{s['resolution']}")
    widths = tuple(sorted({stage1[b.name]["width"] for b in budgets}))
    resolutions = tuple(sorted({stage1[b.name]["resolution"] for b in budgets}))
    shared = space.restrict(widths[0], resolutions[0])
    shared = replace(shared, width_choices=widths, resolution_choices=resolutions)

    # -- the supernet, once ---------------------------------------------------------------------
    setup_tf()
    import tensorflow as tf
    tf.keras.utils.set_random_seed(base.seed)
    data = Data(ds, train, base)
    net = Supernet(shared, seed=base.seed)
    log(f"supernet: widths {', '.join(f'{w:g}' for w in widths)}, resolutions "
        f"{', '.join(map(str, resolutions))} (every budget's stage-1 choice)")
    supernet_phase(base, state, clock, save_time, net, data, resolutions, engine, progress, log)
    if engine is not None:
        share_supernet(engine, net)

    # -- each budget on the shared weights ------------------------------------------------------
    metas = {}
    for i, (b, cfg) in enumerate(zip(budgets, cfgs)):
        folder = Path(cfg.out)
        folder.mkdir(parents=True, exist_ok=True)
        bstate = State(folder)
        if bstate.get("done") and (folder / "model.json").exists():
            metas[b.name] = json.loads((folder / "model.json").read_text())
            log(f"{b.name}: done before, kept ({folder / 'model.tflite'})")
            continue
        bstate.data.setdefault("config", cfg.fingerprint())
        bstate.data.setdefault("stage1", stage1[b.name])
        if state.get("throughput"):
            bstate.data.setdefault("throughput", state["throughput"])
        if "share_s" not in bstate.data:  # an equal part of what is left, fixed at its start
            bstate.data["share_s"] = max(0.0, clock.left) / (n - i)
        bclock = Clock(bstate["share_s"], bstate.get("spent_s", 0.0))
        cost = costs[b.name]
        s = stage1[b.name]
        sub = space.restrict(s["width"], s["resolution"])
        cost.space = sub

        def save_budget_time(bstate=bstate, bclock=bclock):
            bstate.data["spent_s"] = bclock.spent
            bstate.save()
            save_time()

        def save_costs(bstate=bstate, cost=cost):
            bstate.data["costs"] = cost.to_dict(layers=False)
            save_layers()

        log(f"{b.name}: {bstate['share_s']:.0f} s for its evolution, fine-tuning and export")
        metas[b.name] = specialise(cfg, bstate, bclock, save_budget_time, save_costs, net, sub,
                                   cost, data, engine, progress, log, stage1[b.name],
                                   label=b.name)

    rows = [summary_row(b, cfg, metas[b.name]) for b, cfg in zip(budgets, cfgs)]
    summary = {"format": "mcunet-sweep/1", "dataset": ds.name, "seed": base.seed,
               "supernet": {**state["supernet"], "widths": list(widths),
                            "resolutions": list(resolutions)},
               "budgets": rows, "seconds": round(clock.spent, 1)}
    (out / "sweep.json").write_text(json.dumps(summary, indent=1) + "\n")
    state.data["done"] = True
    save_time()
    return summary


def summary_row(b: SweepBudget, cfg: SearchConfig, meta: dict) -> dict:
    """A budget's line of the summary: its winner planned as `mcunet plan MODEL --patch auto`
    (for the budget's core) plans it, and its int8 accuracies."""
    from mcunet.compiler import compile_model

    path = Path(cfg.out) / "model.tflite"
    plan = compile_model(path, patch=default_patch(), target=cfg.target)
    m = meta["measured"]
    library_flash = plan.flash_bytes + m["code_bytes"]  # the code as the search measured it
    return {"name": b.name, "sram_budget_bytes": b.sram_bytes, "flash_budget_bytes": b.flash_bytes,
            "board": b.board, "model": str(path), "arch_key": meta["arch_key"],
            "resolution": meta["input"]["resolution"],
            "peak_sram_bytes": plan.peak_sram_bytes, "flash_bytes": plan.flash_bytes,
            "code_bytes": m["code_bytes"], "library_flash_bytes": library_flash,
            "patch": plan.schedule, "macs": plan.macs,
            "fits": plan.peak_sram_bytes <= b.sram_bytes and library_flash <= b.flash_bytes,
            "val_accuracy_int8": m["val_accuracy_int8"], "test_accuracy_int8": m["test_accuracy_int8"],
            "seconds": meta["seconds"]}


def summary_table(summary: dict) -> list[str]:
    """The sweep's table, one line a budget."""
    def pct(x):
        return f"{100 * x:.2f}%" if x is not None else "-"
    head = ("budget", "SRAM (of budget)", "flash with code (of budget)", "MACs", "int8 val",
            "int8 test", "network")
    rows = [head] + [(r["name"], f"{r['peak_sram_bytes']:,} / {r['sram_budget_bytes']:,} B",
                      f"{r['library_flash_bytes']:,} / {r['flash_budget_bytes']:,} B",
                      f"{r['macs'] / 1e6:.2f} M", pct(r["val_accuracy_int8"]),
                      pct(r["test_accuracy_int8"]), r["arch_key"]) for r in summary["budgets"]]
    widths = [max(len(row[k]) for row in rows) for k in range(len(head))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]

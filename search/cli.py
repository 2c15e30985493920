"""`mcunet search` and `mcunet search-and-deploy` (registered by mcunet/cli.py).

Nothing heavy at module level: TensorFlow is imported only when a search runs.
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from mcunet.boards import get_board
from mcunet.boards.firmware import run_on_board
from mcunet.budget import resolve
from mcunet.errors import McunetError
from mcunet.progress import plural

DEFAULT_DATASET = "fashion-mnist"
DEFAULT_DEPLOY_BOARD = "mps2-an386"  # emulated Cortex-M4
DEFAULT_SRAM, DEFAULT_FLASH = "32KB", "128KB"


def _budget(board: str | None, sram: str | None, flash: str | None) -> tuple[int, int, int | None]:
    """(SRAM bytes, flash bytes, clock Hz) from --board or --sram/--flash (these win)."""
    b = get_board(board) if board else None
    if b is None and (sram is None or flash is None):
        raise McunetError("give a budget: --board NAME, or both --sram (e.g. 32KB) and --flash "
                          "(e.g. 128KB)")
    budget = resolve(sram, flash, b)
    return budget.sram_bytes, budget.flash_bytes, b.clock_hz if b else None


def _budgets(boards, sram: str | None, flash: str | None) -> list:
    """The budgets of --board (repeatable) and --sram/--flash (comma-separated lists): one
    SweepBudget, or several for a sweep (search/sweep.py)."""
    from .sweep import split_list, sweep_budgets

    return sweep_budgets(list(boards or ()), split_list(sram), split_list(flash), _budget)


def search_options(fn):
    opts = [
        click.option("--dataset", default=DEFAULT_DATASET, show_default=True,
                     help="fashion-mnist, a folder with one sub-folder of images per class, "
                          "or an .npz file (x_train, y_train[, x_test, y_test, classes])"),
        click.option("--latency-ms", type=float, default=None,
                     help="latency budget at the board's clock, from mcunet's cost model of "
                          "its core (instructions per layer, one a cycle)"),
        click.option("--time-budget", "time_budget", type=float, default=900.0, show_default=True,
                     help="seconds for the whole search, training included"),
        click.option("--seed", default=0, show_default=True, help="random seed"),
        click.option("--resume", is_flag=True, help="continue the search saved in --out"),
        click.option("--supernet-steps", type=click.IntRange(min=1), default=None,
                     help="fix the supernet's training steps (default: from the time budget)"),
        click.option("--finetune-steps", type=click.IntRange(min=1), default=None,
                     help="fix the winner's fine-tuning steps (default: from the time budget)"),
        click.option("--generations", type=click.IntRange(min=1), default=None,
                     help="fix the number of evolution generations (default: from the time budget)"),
        click.option("--population", type=click.IntRange(min=2), default=16, show_default=True,
                     help="candidates per generation"),
        click.option("--max-macs", default="auto", show_default=True,
                     help="compute cap, e.g. 2.5M (auto: what the time budget can train)"),
        click.option("--train-subset", type=click.IntRange(min=1), default=None,
                     help="train on only this many images (quick trials)"),
        click.option("--ray", "ray", default=None, metavar="auto|ADDRESS",
                     help="distribute the search on a Ray cluster (pip install 'mcunet[ray]'): "
                          "auto (the cluster this machine joined with `ray start`, else a "
                          "local one) or the head's HOST:PORT; see docs/search.md"),
        click.option("--ray-cpus", type=click.FloatRange(min=0, min_open=True), default=1.0,
                     show_default=True, help="CPUs of one Ray task (its TensorFlow threads)"),
        click.option("--ray-gpus", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="GPUs of one Ray task (where the workers have them)"),
        click.option("--ray-replicas", type=click.IntRange(min=1), default=None,
                     help="with --ray: supernet replicas for data-parallel training (default: as "
                          "many tasks as the cluster runs at once); a seed reproduces its search "
                          "with the same number"),
        click.option("--finetune-top", type=click.IntRange(min=1), default=3, show_default=True,
                     help="with --ray: fine-tune this many of the best candidates in parallel "
                          "and keep the best on validation"),
        click.option("--quiet", is_flag=True, help="no progress bars"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _config(dataset, budgets, latency_ms, time_budget, seed, out, supernet_steps,
            finetune_steps, generations, population, train_subset, max_macs, ray=None,
            ray_cpus=1.0, ray_gpus=0.0, finetune_top=3, ray_replicas=None):
    """The search's configuration, for the first of `budgets` (a sweep's base)."""
    from .budget import parse_count
    from .pipeline import SearchConfig

    if time_budget <= 0:
        raise McunetError("--time-budget must be positive (seconds)")
    if latency_ms is not None and not all(b.clock_hz for b in budgets):
        raise McunetError("--latency-ms needs --board (its core and clock give the time)")
    b = budgets[0]
    return SearchConfig(dataset=dataset, sram_bytes=b.sram_bytes, flash_bytes=b.flash_bytes,
                        out=str(out), latency_ms=latency_ms, clock_hz=b.clock_hz,
                        time_budget_s=time_budget, seed=seed, board=b.board,
                        supernet_steps=supernet_steps, finetune_steps=finetune_steps,
                        generations=generations, population=population,
                        train_subset=train_subset, max_macs=parse_count(max_macs),
                        ray=ray, ray_cpus=ray_cpus, ray_gpus=ray_gpus, finetune_top=finetune_top,
                        ray_replicas=ray_replicas)


def _summary(meta: dict, out: Path) -> list[str]:
    m = meta["measured"]
    test = m["test_accuracy_int8"]
    return [
        f"model: {out / 'model.tflite'} ({meta['arch_key']}, {meta['input']['resolution']}x"
        f"{meta['input']['resolution']} input)",
        f"accuracy (int8): {100 * m['val_accuracy_int8']:.2f}% validation"
        + (f", {100 * test:.2f}% test" if test is not None else ""),
        f"peak SRAM {m['peak_sram_bytes']} B ({m['peak_sram_bytes'] / 1024:.1f} KB, patch "
        f"{m['patch']}), flash {m['library_flash_bytes']} B ({m['library_flash_bytes'] / 1024:.1f} "
        f"KB: {m['flash_bytes']} of weights and constants + {m['code_bytes']} of code), "
        f"{m['macs'] / 1e6:.2f} M MACs; budget {meta['budget']['sram_bytes'] / 1024:g} KB / "
        f"{meta['budget']['flash_bytes'] / 1024:g} KB",
        f"Pareto plot: {out / 'pareto.png'}; details: {out / 'model.json'}; "
        f"{meta['seconds']:.0f} s",
    ]


def _sweep_lines(summary: dict, out: Path) -> list[str]:
    from .sweep import summary_table

    return summary_table(summary) + [
        f"SRAM and flash as `mcunet plan MODEL --patch auto` plans each winner; models in "
        f"{out}/NAME/model.tflite; summary: {out / 'sweep.json'}; {summary['seconds']:.0f} s"]


@click.command()
@click.option("--board", "board", multiple=True,
              help="take the SRAM/flash budget from this board (repeat it for a sweep)")
@click.option("--sram", default=None,
              help="SRAM budget, e.g. 32KB; a list (8KB,16KB,32KB) sweeps one supernet over them")
@click.option("--flash", default=None,
              help="flash budget for the library (weights, constants and code, as `mcunet "
                   "compile --flash` counts it), e.g. 128KB, or a list as --sram")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="folder for model.tflite, model.json, pareto.png and the checkpoints "
                   "(a sweep: one folder per budget in it)")
@search_options
def search(board, sram, flash, out, dataset, latency_ms, time_budget, seed, resume,
           supernet_steps, finetune_steps, generations, population, train_subset, max_macs, ray,
           ray_cpus, ray_gpus, finetune_top, ray_replicas, quiet):
    """Search a network for a dataset under an SRAM/flash budget (TinyNAS), train it and
    write it as an int8 .tflite. Several budgets (lists, or --board repeated) train one
    supernet and specialise it for each."""
    from .pipeline import run_search

    budgets = _budgets(board, sram, flash)
    cfg = _config(dataset, budgets, latency_ms, time_budget, seed, out,
                  supernet_steps, finetune_steps, generations, population, train_subset, max_macs,
                  ray, ray_cpus, ray_gpus, finetune_top, ray_replicas)
    if len(budgets) > 1:
        from .sweep import run_sweep

        summary = run_sweep(cfg, budgets, resume=resume, progress=not quiet, log=click.echo)
        click.echo("\n".join(_sweep_lines(summary, Path(out))))
        return
    meta = run_search(cfg, resume=resume, progress=not quiet, log=click.echo)
    click.echo("\n".join(_summary(meta, Path(out))))


@click.command(name="search-and-deploy")
@click.option("--board", "board", multiple=True, default=(DEFAULT_DEPLOY_BOARD,),
              show_default=True,
              help="where the model runs (an emulated board runs in QEMU); repeat it for a sweep")
@click.option("--sram", default=DEFAULT_SRAM, show_default=True,
              help="SRAM budget, or a list for a sweep (each model deployed)")
@click.option("--flash", default=DEFAULT_FLASH, show_default=True,
              help="flash budget for the library (weights, constants and code), or a list")
@click.option("--out", "out", default="mcunet-search", show_default=True,
              type=click.Path(file_okay=False), help="folder for everything")
@click.option("--rows", default=200, show_default=True, type=click.IntRange(min=1),
              help="test images to run on the board")
@search_options
def search_and_deploy(board, sram, flash, out, rows, dataset, latency_ms, time_budget, seed,
                      resume, supernet_steps, finetune_steps, generations, population,
                      train_subset, max_macs, ray, ray_cpus, ray_gpus, finetune_top, ray_replicas,
                      quiet):
    """Search, compile, build and run on a board: dataset and budget in, running firmware out.
    With no arguments: Fashion-MNIST, 32 KB SRAM / 128 KB flash, on an emulated Cortex-M4.
    With several budgets (lists, or --board repeated): one sweep, each model deployed on its
    board."""
    from .pipeline import run_search

    out = Path(out)
    # The budget is --sram/--flash (a small MCU's, by default); the board gives the clock.
    budgets = _budgets(board, sram, flash)
    cfg = _config(dataset, budgets, latency_ms, time_budget, seed, out,
                  supernet_steps, finetune_steps, generations, population, train_subset, max_macs,
                  ray, ray_cpus, ray_gpus, finetune_top, ray_replicas)
    for b in budgets:
        target = get_board(b.board)
        if b.sram_bytes > target.sram_bytes or b.flash_bytes > target.flash_bytes:
            raise McunetError(f"the budget ({b.sram_bytes} B SRAM, {b.flash_bytes} B flash) is "
                              f"more than {target.name} offers the model ({target.sram_bytes} B, "
                              f"{target.flash_bytes} B)")
    if len(budgets) > 1:
        import json

        from .sweep import run_sweep

        summary = run_sweep(cfg, budgets, resume=resume, progress=not quiet, log=click.echo)
        click.echo("\n".join(_sweep_lines(summary, out)))
        for b in budgets:
            click.echo(f"-- {b.name} on {b.board}")
            deploy(out / b.name, json.loads((out / b.name / "model.json").read_text()),
                   get_board(b.board), rows)
        return
    board, target = budgets[0].board, get_board(budgets[0].board)
    from .pipeline import State
    state = State(out) if resume and (out / "state.json").exists() else None
    if state is not None and state.get("done") and (out / "model.json").exists():
        if cfg.ray and cfg.max_macs is None and state.get("config", {}).get("max_macs"):
            from dataclasses import replace  # the cap a --ray search measured
            cfg = replace(cfg, max_macs=state["config"]["max_macs"])
        if state.get("config") != cfg.fingerprint():
            raise McunetError(f"{out} holds a search with other settings (dataset, budget, seed or "
                              f"board); resume it with the same ones, or run its model with "
                              f"`mcunet deploy {out / 'model.tflite'} --board {board} --out DIR`")
        import json
        meta = json.loads((out / "model.json").read_text())
    else:
        meta = run_search(cfg, resume=resume, progress=not quiet, log=click.echo)
    click.echo("\n".join(_summary(meta, out)))
    deploy(out, meta, target, rows)


def deploy(out: Path, meta: dict, board, rows: int) -> dict:
    """Compile the searched model for the board, build the firmware, run test images on it
    and print accuracy, memory and cost."""
    import json

    import numpy as np

    from .budget import compile_for_budget
    from .data import load_dataset, prepare
    from .export import int8_predict, quantize_input

    start = time.perf_counter()
    compiled = compile_for_budget(out / "model.tflite", board.target, meta["budget"]["sram_bytes"])
    lib = out / "lib"
    compiled.library().write(lib)
    ds = load_dataset(meta["dataset_source"] if meta["dataset"] != "fashion-mnist" else "fashion-mnist",
                      seed=meta["seed"])
    split, split_name = (ds.test, "test") if ds.test is not None else (ds.val, "validation")
    split = split.subset(rows, meta["seed"]) if rows < len(split) else split
    x = prepare(split.x, meta["input"]["resolution"])
    q = quantize_input(x, meta["input"]["scale"], meta["input"]["zero_point"])
    result = run_on_board(compiled, board, [q], out / "firmware")
    y_board = result.outputs[0]
    y_ref = int8_predict((out / "model.tflite").read_bytes(), x)
    exact = bool(np.array_equal(y_board.reshape(y_ref.shape), y_ref))
    acc = float((y_board.reshape(len(split), -1).argmax(1) == split.y).mean())
    report = {"board": board.name, "rows": int(len(split)), "split": split_name,
              "accuracy_int8_on_board": acc,
              "bit_exact_with_tflite": exact, "peak_sram_bytes": result.peak_sram_bytes,
              "arena_bytes": result.arena_bytes, "stack_bytes": result.stack_bytes,
              "ram_bytes_measured": result.ram_bytes_measured,
              "flash_bytes_measured": result.flash_bytes_measured,
              "instructions_per_inference": result.instructions, "cycles": result.cycles,
              "macs": result.macs, "seconds": round(time.perf_counter() - start, 1)}
    (out / "deploy.json").write_text(json.dumps(report, indent=2) + "\n")
    cost = (f"{result.instructions:,} instructions per inference"
            f" ({result.instructions / max(result.macs, 1):.2f} per MAC)"
            if result.instructions else
            f"{result.cycles:,} cycles per inference" if result.cycles else "cost not measured")
    click.echo(f"on {board.name}: {100 * acc:.2f}% of {plural(len(split), split_name + ' image')} "
               f"({'bit-exact with' if exact else 'DIFFERENT from'} TFLite's reference kernels)")
    click.echo(f"SRAM {result.peak_sram_bytes} B planned (arena {result.arena_bytes} + stack "
               f"{result.stack_bytes}), {result.ram_bytes_measured} B measured; flash "
               f"{result.flash_bytes_measured} B measured; {cost}")
    click.echo(f"firmware project: {out / 'firmware'}; C library: {lib}")
    return report


COMMANDS = [search, search_and_deploy]

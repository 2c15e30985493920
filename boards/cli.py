"""`mcunet boards`, `build`, `run` and `deploy`: firmware for boards (registered by mcunet.cli)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from mcunet import api
from mcunet.check import check_against_reference
from mcunet.errors import McunetError
from mcunet.host import load_inputs
from mcunet.outdir import check_dir, check_file, make_dir

from . import BOARDS, get_board
from .elf import read_elf
from .firmware import build_firmware, run_on_board


def _kb(n: int) -> str:
    return f"{n / 1024:,.0f} KB" if n < 1 << 20 else f"{n / (1 << 20):,.1f} MB"


@click.command(name="boards")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list instead of a table")
def boards_cmd(as_json):
    """The boards --board accepts: core, memory free for the model, how they are built and run."""
    if as_json:
        click.echo(json.dumps([b.describe() for b in BOARDS.values()], indent=2))
        return
    header = f"{'board':<18} {'core':<14} {'DSP':<4} {'SRAM free':>10} {'flash free':>11} " \
             f"{'clock':>8}  {'PlatformIO':<28} runs on"
    click.echo(header)
    click.echo("-" * len(header))
    for b in BOARDS.values():
        pio = f"{b.pio_platform}/{b.pio_board}" if not b.emulated else "mcunet (local, offline)"
        where = f"QEMU {b.qemu_machine}" if b.emulated else f"upload: {b.upload_protocol}"
        click.echo(f"{b.name:<18} {b.core + ('F' if b.fpu else ''):<14} "
                   f"{'yes' if b.dsp else 'no':<4} {_kb(b.sram_bytes):>10} {_kb(b.flash_bytes):>11} "
                   f"{b.clock_hz / 1e6:>5.0f} MHz  {pio:<28} {where}")
    click.echo("SRAM/flash free: what is left for the model after the harness and framework "
               "(the budgets of --board).")


def _options(fn):
    options = [
        click.option("--board", required=True, help="target board; see `mcunet boards`"),
        click.option("--patch", default="auto", show_default=True,
                     help="patch-based inference: auto, none or RxC@LAYER"),
        click.option("--max-overhead", default=15.0, show_default=True, type=float,
                     help="with --patch auto: most extra MACs (percent) patches may add"),
        click.option("--input", "inputs", multiple=True, type=click.Path(),
                     help="a .npy batch (N, *input_shape[1:]) per model input, in order"),
        click.option("--random", "random_rows", default=0, type=int,
                     help="no --input: N random rows"),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                     help="seed for --random"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _compiled(model, board, patch, max_overhead):
    return api.compile(model, board=board, patch=patch, max_overhead=max_overhead / 100)


def _arrays(inputs, graph, random_rows, seed, default_rows=0):
    if not inputs and random_rows <= 0:
        random_rows = default_rows
    if not inputs and random_rows <= 0:
        return []
    return load_inputs(inputs, graph, random_rows, seed)


@click.command(name="build")
@click.argument("model", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="folder for the PlatformIO project (new, empty, or written by mcunet before)")
@_options
@click.option("--no-build", is_flag=True, help="only write the project (e.g. for a real board "
              "on a machine without PlatformIO's vendor platforms)")
def build_cmd(model, out_dir, board, patch, max_overhead, inputs, random_rows, seed, no_build):
    """Write a PlatformIO project for MODEL on a board and build it with `pio run`."""
    b = get_board(board)
    check_dir(out_dir)
    compiled = _compiled(model, board, patch, max_overhead)
    arrays = _arrays(inputs, compiled.graph, random_rows, seed, default_rows=1)
    start = time.perf_counter()
    elf = build_firmware(compiled, b, make_dir(out_dir), arrays, build=not no_build)
    if elf is None:
        click.echo(f"wrote the PlatformIO project to {out_dir}; build and upload it with: "
                   f"cd {out_dir} && pio run -t upload")
        return
    image = read_elf(elf)
    click.echo(f"built {elf} in {time.perf_counter() - start:.1f} s")
    click.echo(f"flash {image.flash_bytes:,} bytes (weights {compiled.flash_bytes:,}), static RAM "
               f"{image.static_ram_bytes:,} bytes (arena {compiled.plan.arena_bytes:,}); planned "
               f"peak SRAM {compiled.peak_sram_bytes:,} = arena + {compiled.stack_bytes} bytes of "
               "kernel stack")
    if b.emulated:
        click.echo(f"run it: mcunet run {model} --board {b.name} --input X.npy --output Y.npy")
    else:
        click.echo(f"upload it: cd {out_dir} && pio run -t upload && pio device monitor "
                   "(send 'r' to run)")


def _print_result(r, b):
    if r.instructions is not None:
        per_mac = f"{r.instructions_per_mac:.2f} instructions/MAC, " if r.macs else ""
        click.echo(f"{r.instructions:,} instructions per inference, {r.macs:,} MACs "
                   f"({per_mac}{'DSP' if r.dsp else 'portable'} kernels)")
    if r.cycles:
        click.echo(f"{r.cycles:,} cycles per inference ({r.cycles / b.clock_hz * 1e3:.2f} ms at "
                   f"{b.clock_hz / 1e6:.0f} MHz)")
    ram = r.ram
    click.echo(f"RAM measured {r.ram_bytes_measured:,} bytes = arena {ram['arena_bytes']:,} (plan "
               f"{ram['planned_arena_bytes']:,}) + kernel stack {ram['kernel_stack_bytes']} (bound "
               f"{ram['kernel_stack_bound_bytes']}) + harness {ram['harness_static_bytes']:,} "
               f"static + {ram['harness_stack_bytes']} stack; planned peak SRAM "
               f"{r.peak_sram_bytes:,}")
    click.echo(f"flash measured {r.flash_bytes_measured:,} bytes = weights "
               f"{r.flash['weights_bytes']:,} + code and runtime "
               f"{r.flash['code_and_runtime_bytes']:,}")


def _run(model, board, patch, max_overhead, inputs, random_rows, seed, outputs, json_path,
         check, timeout, out_dir=None):
    b = get_board(board)
    for path in outputs:
        check_file(path, "--output")
    if json_path:
        check_file(json_path, "--json")
    if out_dir:
        check_dir(out_dir)
    compiled = _compiled(model, board, patch, max_overhead)
    arrays = _arrays(inputs, compiled.graph, random_rows, seed)
    if not arrays:
        raise McunetError("give --input X.npy (one per model input) or --random N")
    if outputs and len(outputs) != len(compiled.graph.outputs):
        raise McunetError(f"the model has {len(compiled.graph.outputs)} outputs; give as many "
                          f"--output files (got {len(outputs)})")
    start = time.perf_counter()
    result = run_on_board(compiled, b, arrays, make_dir(out_dir) if out_dir else None,
                          timeout=timeout)
    click.echo(f"ran {arrays[0].shape[0]} rows on {b.name} in {time.perf_counter() - start:.1f} s "
               "(including the build)")
    _print_result(result, b)
    for path, y in zip(outputs, result.outputs):
        np.save(path, y)
        click.echo(f"wrote {path}: {y.shape} {y.dtype}")
    if json_path:
        Path(json_path).write_text(json.dumps({"model": str(model), **result.to_json()}, indent=2))
        click.echo(f"wrote {json_path}")
    if check:
        verdict = check_against_reference(model, compiled, arrays, result.outputs)
        click.echo(verdict.summary())
        if not verdict.exact:
            raise SystemExit(1)


def _run_options(fn):
    options = [
        click.option("--output", "outputs", multiple=True, type=click.Path(),
                     help="where to write each model output as a .npy batch"),
        click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
                     help="write the measurements (instructions, cycles, RAM, flash) as JSON"),
        click.option("--check", is_flag=True,
                     help="compare every output byte with TFLite's reference kernels"),
        click.option("--timeout", default=600.0, show_default=True,
                     help="seconds to wait for the board (or QEMU) to finish"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command(name="run")
@click.argument("model", type=click.Path())
@_options
@_run_options
def run_cmd(model, board, patch, max_overhead, inputs, random_rows, seed, outputs, json_path,
            check, timeout):
    """Build MODEL's firmware (cached) and run it on a board: emulated boards under QEMU with
    instruction counting, real ones by upload and the serial port."""
    _run(model, board, patch, max_overhead, inputs, random_rows, seed, outputs, json_path, check,
         timeout)


@click.command(name="deploy")
@click.argument("model", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="folder for the PlatformIO project")
@_options
@_run_options
def deploy_cmd(model, out_dir, board, patch, max_overhead, inputs, random_rows, seed, outputs,
               json_path, check, timeout):
    """Build MODEL's firmware in OUT and put it on the board: upload and run on a real board,
    run under QEMU on an emulated one (random rows unless --input)."""
    if not inputs and random_rows <= 0:
        random_rows = 1
    _run(model, board, patch, max_overhead, inputs, random_rows, seed, outputs, json_path, check,
         timeout, out_dir=out_dir)


COMMANDS = [boards_cmd, build_cmd, run_cmd, deploy_cmd]

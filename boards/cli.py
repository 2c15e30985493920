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
from mcunet.search.data import as_model_input, epoch_order, load_training_data, parse_classes
from mcunet.outdir import check_dir, check_file, make_dir
from mcunet.options import (arithmetic_option, library_kwargs, library_options, patch_options,
                            tune_first, tune_option)
from mcunet.progress import plural, progress
from mcunet.report import table

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
        pio = f"{b.pio_platform.split('/')[-1]}@{b.pio_platform_version} {b.pio_board}" \
            if not b.emulated else "mcunet (local, offline)"
        where = f"QEMU {b.qemu_machine}" if b.emulated else f"upload: {b.upload_protocol}"
        click.echo(f"{b.name:<18} {b.core + ('F' if b.fpu else ''):<14} "
                   f"{'yes' if b.dsp else 'no':<4} {_kb(b.sram_bytes):>10} {_kb(b.flash_bytes):>11} "
                   f"{b.clock_hz / 1e6:>5.0f} MHz  {pio:<28} {where}")
    click.echo("SRAM/flash free: what is left for the model after the harness and framework "
               "(the budgets of --board).")


def _options(fn):
    options = [
        click.option("--board", required=True, help="target board; see `mcunet boards`"),
        click.option("--input", "inputs", multiple=True, type=click.Path(),
                     help="a .npy batch (N, *input_shape[1:]) per model input, in order"),
        click.option("--random", "random_rows", default=0, type=int,
                     help="no --input: N random rows"),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                     help="seed for --random"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return arithmetic_option(patch_options(fn))


def _compiled(model, board, patch, max_overhead, arithmetic="reference", **library):
    return api.compile(model, board=board, patch=patch, max_overhead=max_overhead / 100,
                       arithmetic=arithmetic, **library)


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
@library_options
@click.option("--profile", is_flag=True, help="a profile build: a mark after every layer "
              "(per-layer instructions and stack with `mcunet run --project`)")
@click.option("--no-build", is_flag=True, help="only write the project (e.g. for a real board "
              "on a machine without PlatformIO's vendor platforms)")
@tune_option
def build_cmd(model, out_dir, board, patch, max_overhead, arithmetic, inputs, random_rows, seed,
              lib_name, arena_section, external_arena, lib_version, profile, no_build, tune):
    """Write a PlatformIO project for MODEL on a board and build it with `pio run`. A project
    for an emulated board builds on its own, offline: `cd OUT && pio run`."""
    b = get_board(board)
    if profile and not b.emulated:
        raise McunetError("--profile needs an emulated board (instruction counting)")
    check_dir(out_dir)
    if tune:
        tune_first(model, board=board, arithmetic=arithmetic)
    compiled = _compiled(model, board, patch, max_overhead, arithmetic,
                         **library_kwargs(lib_name, arena_section, external_arena, lib_version))
    arrays = _arrays(inputs, compiled.graph, random_rows, seed, default_rows=1)
    start = time.perf_counter()
    with progress(f"writing the project{'' if no_build else ' and building it (pio run)'}"):
        elf = build_firmware(compiled, b, make_dir(out_dir), arrays, build=not no_build,
                             source=str(Path(model).resolve()), profile=profile)
    if elf is None:
        how = "pio run" if b.emulated else "pio run -t upload"
        click.echo(f"wrote the PlatformIO project to {out_dir}; build it with: "
                   f"cd {out_dir} && {how}")
        return
    image = read_elf(elf)
    click.echo(f"built {elf} in {time.perf_counter() - start:.1f} s")
    click.echo(f"flash {image.flash_bytes:,} bytes (weights {compiled.flash_bytes:,}), static RAM "
               f"{image.static_ram_bytes:,} bytes (arena {compiled.plan.arena_bytes:,}); planned "
               f"peak SRAM {compiled.peak_sram_bytes:,} = arena + {compiled.stack_bytes} bytes of "
               "kernel stack")
    if b.emulated:
        click.echo(f"run it: mcunet run --project {out_dir} (or cd {out_dir} && pio run to "
                   "rebuild after editing it)")
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
    library = "" if r.flash_library_bytes_measured is None else \
        f"; the library {r.flash_library_bytes_measured:,}" + (
            f" (predicted {r.flash_total_bytes:,})" if r.flash_total_bytes else "")
    click.echo(f"flash measured {r.flash_bytes_measured:,} bytes = weights "
               f"{r.flash['weights_bytes']:,} + code and runtime "
               f"{r.flash['code_and_runtime_bytes']:,}{library}")


def _print_layers(r):
    """The profile: each layer's instructions beside the cost model's estimate."""
    rows = []
    for layer in r.layers:
        est = layer.get("estimated")
        ratio = f"{layer['instructions'] / est:.2f}" if est else "-"
        rows.append([layer["index"], layer["op"], layer["kernel"], layer["macs"],
                     layer["instructions"], est if est is not None else "-", ratio,
                     layer["stack_bytes_measured"] if layer["stack_bytes_measured"] is not None
                     else "-", layer["live_bytes"]])
    click.echo(table(["#", "op", "kernel", "MACs", "instructions", "estimated", "meas/est",
                      "stack B", "live arena B"], rows, align="rllrrrrrr"))


def _finish(r, b, outputs, json_path, model, profile, extra=None):
    _print_result(r, b)
    if profile and r.layers:
        _print_layers(r)
    for path, y in zip(outputs, r.outputs):
        np.save(path, y)
        click.echo(f"wrote {path}: {y.shape} {y.dtype}")
    if json_path:
        Path(json_path).write_text(json.dumps({"model": str(model) if model else None,
                                               **(extra or {}), **r.to_json()}, indent=2))
        click.echo(f"wrote {json_path}")


def _check_outputs(outputs, json_path) -> None:
    """The output files' folders exist and they are not folders, before any work."""
    for path in outputs:
        check_file(path, "--output")
    if json_path:
        check_file(json_path, "--json")


def _run(model, board, patch, max_overhead, arithmetic, inputs, random_rows, seed, outputs,
         json_path, check, timeout, profile, tune=False, out_dir=None):
    b = get_board(board)
    _check_outputs(outputs, json_path)
    if out_dir:
        check_dir(out_dir)
    if tune:
        tune_first(model, board=board, arithmetic=arithmetic)
    compiled = _compiled(model, board, patch, max_overhead, arithmetic)
    arrays = _arrays(inputs, compiled.graph, random_rows, seed)
    if not arrays:
        raise McunetError("give --input X.npy (one per model input) or --random N")
    if outputs and len(outputs) != len(compiled.graph.outputs):
        raise McunetError(f"the model has {plural(len(compiled.graph.outputs), 'output')}; give as many "
                          f"--output files (got {len(outputs)})")
    # The JSON report carries the per-layer profile: a profile build (emulated boards).
    profile = (profile or bool(json_path)) and b.emulated
    start = time.perf_counter()
    rows = arrays[0].shape[0]
    with progress(f"building and running {plural(rows, 'row')} on {b.name}"):
        result = run_on_board(compiled, b, arrays, make_dir(out_dir) if out_dir else None,
                              timeout=timeout, profile=profile, source=str(Path(model).resolve()))
    click.echo(f"ran {plural(rows, 'row')} on {b.name} in {time.perf_counter() - start:.1f} s "
               "(including the build)")
    _finish(result, b, outputs, json_path, model, profile)
    if check:
        verdict = check_against_reference(model, compiled, arrays, result.outputs)
        click.echo(verdict.summary())
        if not verdict.exact:
            raise SystemExit(1)


def _run_project(project, inputs, outputs, json_path, check, timeout, profile):
    from .firmware import ProjectInfo, run_project

    _check_outputs(outputs, json_path)
    project = Path(project)
    info = ProjectInfo.read(project)
    if profile and not info.profile:
        raise McunetError(f"{project} is not a profile build; write it with mcunet build "
                          "--profile to get per-layer instructions")
    arrays = None
    if inputs:
        arrays = load_inputs(inputs, None)
        if len(arrays) != len(info.inputs):
            raise McunetError(f"the project's model has {plural(len(info.inputs), 'input')}; give as many "
                              f"--input files (got {len(arrays)})")
    if outputs and len(outputs) != len(info.outputs):
        raise McunetError(f"the project's model has {plural(len(info.outputs), 'output')}; give as many "
                          f"--output files (got {len(outputs)})")
    b = get_board(info.board)
    start = time.perf_counter()
    with progress(f"building {project} (pio run) and running it on {b.name}"):
        result, info = run_project(project, arrays, timeout=timeout)
    rows = result.outputs[0].shape[0] if result.outputs else 0
    click.echo(f"ran {plural(rows, 'row')} of {project} on {b.name} in "
               f"{time.perf_counter() - start:.1f} s (including the build)")
    _finish(result, b, outputs, json_path, info.model, info.profile, {"project": str(project)})
    if check:
        if not info.model or not Path(info.model).is_file():
            raise McunetError("--check needs the model the project was built from "
                              f"({info.model or 'not recorded'}); it is not there")
        if arrays is None:
            raise McunetError("--check with --project needs the rows: give --input X.npy")
        compiled = _compiled(info.model, info.board, "auto", 15.0, info.arithmetic)
        verdict = check_against_reference(info.model, compiled, arrays, result.outputs)
        click.echo(verdict.summary())
        if not verdict.exact:
            raise SystemExit(1)


def _run_options(fn):
    options = [
        click.option("--output", "outputs", multiple=True, type=click.Path(),
                     help="where to write each model output as a .npy batch"),
        click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
                     help="write the measurements (instructions, cycles, RAM, flash, and per "
                          "layer on emulated boards) as JSON"),
        click.option("--check", is_flag=True,
                     help="compare every output byte with TFLite's reference kernels (with "
                          "--arithmetic tflm: TF Lite Micro's interpreter)"),
        click.option("--profile", is_flag=True,
                     help="print each layer's instructions and stack (emulated boards)"),
        click.option("--timeout", default=600.0, show_default=True,
                     help="seconds to wait for the board (or QEMU) to finish"),
        tune_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command(name="run")
@click.argument("model", type=click.Path(), required=False)
@click.option("--project", default=None, type=click.Path(file_okay=False),
              help="run this project of `mcunet build` as it is (edited or not) instead of "
                   "compiling MODEL")
@click.option("--board", default=None, help="target board; see `mcunet boards`")
@click.option("--input", "inputs", multiple=True, type=click.Path(),
              help="a .npy batch (N, *input_shape[1:]) per model input, in order")
@click.option("--random", "random_rows", default=0, type=int, help="no --input: N random rows")
@click.option("--seed", default=0, show_default=True, help="seed for --random")
@patch_options
@arithmetic_option
@_run_options
def run_cmd(model, project, board, inputs, random_rows, seed, patch, max_overhead, arithmetic,
            outputs, json_path, check, profile, timeout, tune):
    """Build MODEL's firmware (cached) and run it on a board: emulated boards under QEMU with
    instruction counting, real ones by upload and the serial port. With --project, build and
    run that project instead."""
    if project:
        if model or board or random_rows or arithmetic != "reference" or tune:
            raise McunetError("--project runs the project as it is: give no MODEL, --board, "
                              "--random, --arithmetic or --tune (its board, model, arithmetic "
                              "and kernels are the project's)")
        _run_project(project, inputs, outputs, json_path, check, timeout, profile)
        return
    if not model or not board:
        raise McunetError("give MODEL and --board (or --project DIR of `mcunet build`)")
    _run(model, board, patch, max_overhead, arithmetic, inputs, random_rows, seed, outputs,
         json_path, check, timeout, profile, tune)


@click.command(name="deploy")
@click.argument("model", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="folder for the PlatformIO project")
@_options
@_run_options
def deploy_cmd(model, out_dir, board, patch, max_overhead, arithmetic, inputs, random_rows,
               seed, outputs, json_path, check, profile, timeout, tune):
    """Build MODEL's firmware in OUT and put it on the board: upload and run on a real board,
    run under QEMU on an emulated one (random rows unless --input)."""
    if not inputs and random_rows <= 0:
        random_rows = 1
    _run(model, board, patch, max_overhead, arithmetic, inputs, random_rows, seed, outputs,
         json_path, check, timeout, profile, tune, out_dir=out_dir)


# ---------------------------------------------------------------------------------------------
# mcunet train-on-device


@click.command(name="train-on-device")
@click.argument("model", type=click.Path())
@click.option("--train", "scheme", required=True, metavar="SPEC",
              help="what is trained: head (the last fully connected layer's weights and bias) "
                   "or bias (its bias); docs/training.md")
@click.option("--board", required=True, help="an emulated board (QEMU), e.g. mps2-an386, or "
              "a real one with --port")
@click.option("--dataset", required=True,
              help="fashion-mnist, or an .npz of x_train, y_train, x_test, y_test (or x, y)")
@click.option("--classes", default=None,
              help="train on these classes only, relabelled 0.. in order (e.g. 5-9)")
@click.option("--samples", default=500, show_default=True, type=click.IntRange(min=1),
              help="labelled training samples taken from the dataset (at random)")
@click.option("--steps", default=None, type=click.IntRange(min=0),
              help="training steps (cycling over the samples); default one epoch")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="passes over the samples, reshuffled each time (instead of --steps)")
@click.option("--eval", "eval_rows", default=200, show_default=True,
              type=click.IntRange(min=0), help="held-out rows evaluated before and after")
@click.option("--lr", default=None, type=float, help="learning rate (default 0.01)")
@click.option("--momentum", default=None, type=float, help="momentum (default 0.9)")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--check/--no-check", default=True, show_default=True,
              help="compare every loss, logit and parameter byte with the NumPy reference "
                   "(mcunet.training.TrainReference); exit 1 if any differs")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="write the measurements as JSON")
@click.option("--timeout", default=None, type=float,
              help="seconds to wait for QEMU (semihosting; default 1800); over the serial "
                   "port, seconds the board may take over one frame (default 30)")
@click.option("--port", default=None, envvar="MCUNET_SERIAL_PORT", metavar="PATH",
              help="a real board's serial port (default $MCUNET_SERIAL_PORT): upload with "
                   "PlatformIO, then stream the samples over it (docs/training.md)")
@click.option("--serial", "over_serial", is_flag=True,
              help="emulated boards: the real boards' serial firmware and protocol, over "
                   "QEMU's UART (instead of semihosting)")
def train_on_device_cmd(model, scheme, board, dataset, classes, samples, steps, epochs,
                        eval_rows, lr, momentum, seed, check, json_path, timeout, port,
                        over_serial):
    """Train MODEL on a board: the firmware gets labelled samples (over semihosting on an
    emulated board, framed over the serial port on a real one, --port), runs NAME_train_step
    on each, and reports accuracy before and after on held-out rows, instructions (emulated)
    or cycles (real boards with a DWT) per step and the RAM it used beside the plan."""
    from .ondevice import (check_emulated, check_port, check_trainable, reference_mismatches,
                           train_on_board, train_on_emulated_serial, train_over_port)

    b = get_board(board)
    if not b.emulated and not port:
        check_emulated(b)  # the error: no --port
    if b.emulated and port:
        raise McunetError(f"{b.name} is emulated: it takes no --port (--serial runs the serial "
                          "protocol over QEMU's UART)")
    serial = not b.emulated or over_serial
    if not b.emulated:
        check_port(port)  # before the dataset and the compile
    if steps is not None and epochs is not None:
        raise McunetError("give --steps or --epochs, not both")
    if json_path:
        check_file(json_path, "--json")
    picked = parse_classes(classes)
    x_train, y_train, x_test, y_test = load_training_data(dataset, picked)
    compiled = api.compile(model, board=b.name, train=scheme)
    check_trainable(compiled, b, serial)
    rng = np.random.default_rng(seed)
    take = rng.permutation(len(x_train))[:samples]
    x_train, y_train = as_model_input(x_train[take], compiled), y_train[take]
    held = rng.permutation(len(x_test))[:eval_rows]
    x_test, y_test = as_model_input(x_test[held], compiled), y_test[held]
    n = len(x_train)
    if epochs is not None:
        order = epoch_order(n, epochs, seed)  # as train-plan's, step for step
    else:
        total = n if steps is None else steps
        order = np.tile(np.arange(n), -(-total // n))[:total]
    tx, ty = x_train[order], y_train[order]
    start = time.perf_counter()
    src = str(Path(model).resolve())
    how = f"over {port}" if port else "over QEMU's UART" if serial else ""
    with progress(f"building and training {plural(len(tx), 'step')} on {b.name} {how}".strip()):
        if not b.emulated:
            result = train_over_port(compiled, b, tx, ty, x_test, port, lr=lr,
                                     momentum=momentum, timeout=timeout or 30.0, source=src)
        elif serial:
            result = train_on_emulated_serial(compiled, b, tx, ty, x_test, lr=lr,
                                              momentum=momentum,
                                              timeout=min(timeout or 1800.0, 600.0), source=src)
        else:
            result = train_on_board(compiled, b, tx, ty, x_test, lr=lr, momentum=momentum,
                                    timeout=timeout or 1800.0, source=src)
    seconds = time.perf_counter() - start
    before, after = result.accuracy(y_test)
    ins = np.array(result.step_instructions or [0])
    r = result.ram
    click.echo(f"trained --train {scheme} on {b.name}{' ' + how if how else ''}: "
               f"{plural(len(tx), 'step')} over "
               f"{plural(n, 'sample')} in {seconds:.1f} s (including the build; compiled with "
               f"{' '.join(result.flags)})")
    if before is not None:
        click.echo(f"accuracy on {plural(len(y_test), 'held-out row')}: before {before:.1%}, "
                   f"after {after:.1%}")
    if len(tx):
        k = max(1, min(50, len(tx) // 4))
        click.echo(f"loss: mean {result.run.losses[:k].mean():.4f} over the first "
                   f"{plural(k, 'step')}, {result.run.losses[-k:].mean():.4f} over the last")
        if result.step_instructions:
            click.echo(f"instructions per training step: {ins.mean():,.0f} (min {ins.min():,}, "
                       f"max {ins.max():,})" + (f"; per invoke {np.mean(result.invoke_instructions):,.0f}"
                                               if result.invoke_instructions else ""))
        elif not b.emulated:
            click.echo("instructions: not counted on a real board (only emulated boards count "
                       "them)")
        if result.step_cycles:
            cyc = np.array(result.step_cycles)
            click.echo(f"cycles per training step (DWT CYCCNT): {cyc.mean():,.0f} (min "
                       f"{cyc.min():,}, max {cyc.max():,}; {cyc.mean() / b.clock_hz * 1e3:.2f} ms "
                       f"at {b.clock_hz / 1e6:.0f} MHz)" +
                       (f"; per invoke {np.mean(result.invoke_cycles):,.0f}"
                        if result.invoke_cycles else ""))
        elif not b.emulated:
            click.echo(f"cycles: not measured ({b.core} has no DWT cycle counter)")
    stack = max(r['step_stack_bytes'], r['invoke_stack_bytes'])
    if r["library_static_bytes"] is not None:
        click.echo(f"RAM measured: library {r['library_measured_bytes']:,} B (static "
                   f"{r['library_static_bytes']:,}: arena {r['arena_bytes']:,} + training state "
                   f"{r['library_static_bytes'] - r['arena_bytes']:,}; stack {stack:,}) vs "
                   f"planned {r['planned_bytes']:,} B (plan --train --board {b.name}); firmware "
                   f"total {r['measured_bytes']:,} B with the harness's "
                   f"{r['harness_static_bytes']:,} static and {r['harness_stack_bytes']:,} stack")
    else:
        click.echo(f"RAM measured: arena {r['arena_bytes']:,} B + library stack {stack:,} "
                   f"(painted) vs planned {r['planned_bytes']:,} B (plan --train --board "
                   f"{b.name}); the library's static RAM is not measured (no link map); "
                   f"firmware total {r['measured_bytes']:,} B")
    report = {"model": str(model), "dataset": dataset, "classes": picked, "samples": n,
              "accuracy_before": before, "accuracy_after": after, "seconds": round(seconds, 1),
              **result.to_json()}
    exact = None
    if check:
        bad = reference_mismatches(str(model), compiled, result, tx, ty, x_test, lr=lr,
                                   momentum=momentum)
        exact = not bad
        click.echo("bit-exact with the NumPy reference (every loss, logit and parameter byte): "
                   + ("yes" if exact else "NO: " + ", ".join(bad)))
        report["bit_exact"] = exact
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1) + "\n")
    if exact is False:
        raise SystemExit(1)


COMMANDS = [boards_cmd, build_cmd, run_cmd, deploy_cmd, train_on_device_cmd]

"""The `mcunet` command. Bad input ends in one readable line and exit code 2, never a traceback."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
import numpy as np

from . import __version__, api
from .boards import cli as boards_cli
from .boards import get_board
from .budget import fit, not_fitting
from .check import check_against_reference, compared_with
from .codegen.lower import check_supported
from .compiler import compile_model, load_graph
from .costmodel import estimate
from .errors import McunetError
from .evaluate import DEFAULT_BOARD_ROWS, confusion_table
from .evaluate import evaluate as run_evaluation
from .host import build_host, check_inputs, load_inputs
from .search.data import parse_classes
from .outdir import check_dir, check_file, make_dir, record
from .options import (arithmetic_option, library_kwargs, library_options, memory_options,
                      tune_first, tune_option)
from .plot import html_report, memory_png, write_png
from .progress import plural, progress
from .report import (compile_report, inspect_table, io_lines, layer_estimates, plan_table,
                     summary_lines, where)
from .search import cli as search_cli
from .search.export import is_keras


def _compile(model, patch, max_overhead, sram, flash, board, target, arithmetic, check=True,
             train=None, **library):
    """Compile with the memory options (--max-overhead in percent) and check the budget."""
    how = api.compile if check else api.compile_unchecked
    return how(model, board=board, target=target, patch=patch, sram=sram, flash=flash,
               max_overhead=max_overhead / 100, arithmetic=arithmetic, train=train, **library)


def train_option(fn):
    return click.option(
        "--train", "train", default=None, metavar="SPEC",
        help="a training build (docs/training.md): head (the last fully connected layer's "
             "weights and bias), last:N (the weights and biases of the last N trainable layers: "
             "the head, the 1x1 conv under its pooling, the depthwise under that), bias (their "
             "biases) or a sparse scheme's JSON file (per layer its biases and a ratio of its "
             "output channels' weights); adds NAME_train_step(input, label), plans "
             "layer by layer and counts the training state in the peak SRAM")(fn)


def training_lines(compiled) -> list[str]:
    """What a --train build adds, for plan and compile."""
    if compiled.training is None:
        return []
    s = compiled.training.summary(compiled)
    return [f"training: --train {s['scheme']} updates {s['updates']} (op{'s' if len(s['layers']) > 1 else ''} {', '.join(map(str, s['layers']))}, "
            f"{s['parameters']:,} parameters); training peak SRAM "
            f"{s['training_peak_sram_bytes']:,} bytes (arena {compiled.plan.arena_bytes:,}, "
            f"training state {s['static_bytes']:,}), flash {s['training_flash_bytes']:,} bytes of "
            "constants (the head's flash copy for reset and its QAS factors included)"
            + (f" + code {compiled.code_bytes:,}" if compiled.code_bytes is not None else "")]


def write_output(out: Path, files: dict[str, str | bytes]) -> list[Path]:
    """Write everything `mcunet compile` produces into its --out folder, in one place (where
    the output folder's checks and the clean-up of mcunet's own stale files belong)."""
    paths = []
    for rel, data in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        paths.append(path)
    record(out, sorted(files))  # and remove what an earlier compile left that is not here now
    return paths


def kernels_line(compiled) -> str:
    """Which kernels the compile chose, and for the host how to get a core's."""
    t = compiled.target
    line = f"kernels: {t.kernels} for {t.name}"
    if t.name == "host":
        line += " (for a microcontroller give --target, e.g. cortex-m4 for its DSP kernels, or --board)"
    return line


def _memory_figure(model_path, compiled):
    """The layer-by-layer plan beside the chosen one, and their PNG."""
    layerwise = compiled if not compiled.stages else compiled.layer_by_layer or compile_model(
        model_path, patch="none", target=compiled.target, options=compiled.options)
    return layerwise, memory_png(layerwise, compiled, f"{Path(model_path).name} on "
                                 f"{where(compiled)}: live arena per layer")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcunet")
def cli():
    """mcunet: int8 TensorFlow Lite models to bit-exact, malloc-free C for microcontrollers."""


@cli.command()
@click.argument("model", type=click.Path())
def inspect(model):
    """Ops, shapes, MACs, parameters and activation sizes of MODEL."""
    graph = load_graph(model)
    click.echo("\n".join(io_lines(graph)))
    click.echo(inspect_table(graph))
    check_supported(graph)  # after the table: every operator mcunet cannot compile, at once


@cli.command()
@click.argument("model", type=click.Path())
@memory_options
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of tables")
@click.option("--png", "png_path", default=None, type=click.Path(),
              help="where to write the memory-per-layer figure [default: MODEL_memory.png]")
@click.option("--no-png", is_flag=True, help="do not write the figure")
@click.option("--calibration", default=None,
              help="MODEL is a Keras model (.keras, .h5) or a SavedModel: quantise it to int8 "
                   "first, calibrated on this .npy of float inputs or dataset (fashion-mnist, a "
                   "folder of class folders, an .npz)")
@train_option
def plan(model, patch, max_overhead, arithmetic, sram, flash, board, target, as_json, png_path,
         no_png, calibration, train):
    """Plan MODEL's memory: peak SRAM, flash, a per-layer table and a figure. Over budget it
    still shows the best plan found, then fails (exit 2)."""
    if png_path and not no_png:
        check_file(png_path, "--png")
    model = str(api.resolve_model(model, calibration))
    compiled = _compile(model, patch, max_overhead, sram, flash, board, target, arithmetic,
                        check=False, train=train)
    result = fit(compiled, compiled.budget)
    written = None
    if not no_png:
        layerwise, png = _memory_figure(model, compiled)
        written = write_png(Path(png_path or f"{Path(model).stem}_memory.png"), png)
    if as_json:
        cost = estimate(compiled)
        per_op = layer_estimates(compiled)
        b = compiled.budget
        click.echo(json.dumps({
            "model": str(model), **compiled.summary(), **result.headroom(),
            "estimated_instructions": cost.instructions if cost else None,
            "estimated_latency_ms": round(cost.latency_s(b.clock_hz) * 1e3, 4)
            if cost and b and b.clock_hz else None,
            "png": str(written) if written else None,
            "layers": [{**row, "estimated_instructions": per_op.get(row["index"])}
                       for row in compiled.layers]}, indent=2))
    else:
        click.echo(plan_table(compiled))
        click.echo("\n".join(summary_lines(compiled) + training_lines(compiled)))
        if written:
            click.echo(f"figure: {written}")
    if not result.fits:
        raise McunetError(not_fitting(result, api.advice(model, compiled, result, patch,
                                                          max_overhead / 100)))


@cli.command(name="compile")
@click.argument("model", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="folder for the generated C library (new, empty, or written by mcunet before)")
@memory_options
@library_options
@click.option("--arduino", is_flag=True, help="write an Arduino library (library.properties, "
              "the sources under src/, an example sketch) instead of the plain folder")
@click.option("--calibration", default=None,
              help="MODEL is a Keras model (.keras, .h5) or a SavedModel: quantise it to int8 "
                   "first, calibrated on this .npy of float inputs or dataset (fashion-mnist, a "
                   "folder of class folders, an .npz)")
@tune_option
@train_option
def compile_cmd(model, out_dir, patch, max_overhead, arithmetic, sram, flash, board, target,
                lib_name, arena_section, external_arena, lib_version, arduino, calibration, tune,
                train):
    """Turn MODEL into a self-contained C99 library in OUT (with report.md and report.html):
    sources, a CMakeLists.txt and a PlatformIO library.json."""
    start = time.perf_counter()
    check_dir(out_dir, "--out")
    model = str(api.resolve_model(model, calibration))
    if tune:
        tune_first(model, board, target, arithmetic)
    compiled = _compile(model, patch, max_overhead, sram, flash, board, target, arithmetic,
                        train=train,
                        **library_kwargs(lib_name, arena_section, external_arena, lib_version))
    library = compiled.library()
    files: dict[str, str | bytes] = library.arduino(Path(model).stem) if arduino \
        else dict(library.files)
    rel = sorted(files)
    layerwise, png = _memory_figure(model, compiled)
    files["report.md"] = compile_report(compiled, rel)
    files["memory.png"] = png
    files["report.html"] = html_report(compiled, layerwise, png, rel)
    out = make_dir(out_dir, "--out")
    paths = write_output(out, files)
    click.echo(f"wrote {plural(len(paths), 'file')} to {out} in "
               f"{time.perf_counter() - start:.2f} s ({plural(len(library.kernels), 'kernel')}"
               f"{', an Arduino library' if arduino else ''})")
    click.echo(kernels_line(compiled))
    click.echo("\n".join(summary_lines(compiled) + training_lines(compiled)))
    click.echo(f"report: {out / 'report.html'}")


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--input", "inputs", multiple=True, type=click.Path(),
              help="a .npy batch (N, *input_shape[1:]) per model input, in order")
@click.option("--output", "outputs", multiple=True, type=click.Path(),
              help="where to write each model output as a .npy batch")
@click.option("--random", "random_rows", default=0, type=int,
              help="no --input: run N random rows instead")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="seed for --random")
@click.option("--check", is_flag=True, help="also run TFLite's reference kernels (with "
              "--arithmetic tflm: TF Lite Micro's interpreter) and compare every output byte; "
              "on a difference, name the first differing layer")
@memory_options
@click.option("--sanitize", is_flag=True, help="build with -fsanitize=address,undefined and "
              "guard bytes around the arena")
def simulate(model, inputs, outputs, random_rows, seed, check, patch, max_overhead, arithmetic,
             sram, flash, board, target, sanitize):
    """Build MODEL's generated C for this host and run it on inputs (with --target or
    --board, that core's kernels: the DSP ones compile against plain-C versions of their
    instructions)."""
    for path in outputs:
        check_file(path, "--output")
    compiled = _compile(model, patch, max_overhead, sram, flash, board, target, arithmetic)
    arrays = load_inputs(inputs, compiled.graph, random_rows, seed)
    if outputs and len(outputs) != len(compiled.graph.outputs):
        raise McunetError(f"the model has {plural(len(compiled.graph.outputs), 'output')}; give as many "
                          f"--output files (got {len(outputs)})")
    rows = check_inputs(compiled.graph, arrays)  # before the build: a bad input is one line
    start = time.perf_counter()
    with progress(f"building for the host and running {plural(rows, 'row')}"):
        results, _ = build_host(compiled, sanitize=sanitize).run(arrays)
    click.echo(f"ran {plural(rows, 'row')} in {time.perf_counter() - start:.2f} s "
               "(including the host build)")
    for path, y in zip(outputs, results):
        np.save(path, y)
        click.echo(f"wrote {path}: {y.shape} {y.dtype}")
    if check:
        result = check_against_reference(model, compiled, arrays, results)
        click.echo(result.summary())
        if not result.exact:
            sys.exit(1)


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise McunetError(f"--input-range {text!r}: write LOW,HIGH, e.g. 0,1 or -1,1") from None
    if not lo < hi:
        raise McunetError(f"--input-range {text!r}: LOW must be below HIGH")
    return lo, hi


INPUT_RANGE_HELP = ("what the model takes for an image's pixel values 0..255, as LOW,HIGH "
                    "(0,1: divided by 255; -1,1 as Keras' MobileNet preprocessing)")


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--calibration", required=True,
              help="an .npy of float inputs (N, *input_shape[1:]) or a dataset: fashion-mnist, "
                   "a folder of class folders, an .npz")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="the int8 .tflite to write")
@click.option("--io", "io_type", type=click.Choice(["int8", "float"]), default="int8",
              show_default=True, help="the model's input and output: int8, or float32 (converted "
                                      "at the edges)")
@click.option("--samples", default=api.DEFAULT_CALIBRATION_SAMPLES, show_default=True,
              help="calibration inputs to use")
@click.option("--input-range", default="0,1", show_default=True, help=INPUT_RANGE_HELP)
def quantize(model, calibration, out_path, io_type, samples, input_range):
    """Quantise a Keras model (.keras, .h5) or a SavedModel folder to a full int8 .tflite with
    TF's converter, calibrated on CALIBRATION."""
    start = time.perf_counter()
    out = api.quantize(model, calibration, out_path, float_io=io_type == "float",
                       samples=samples, input_range=_range(input_range))
    graph = load_graph(out)
    click.echo(f"wrote {out} in {time.perf_counter() - start:.1f} s ({plural(len(graph.ops), 'op')}, "
               f"{io_type} input and output)")
    click.echo("\n".join(io_lines(graph)))
    check_supported(graph)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--dataset", required=True,
              help="fashion-mnist, a folder with one sub-folder of images per class, or an .npz "
                   "(its test split; a folder's held-out tenth)")
@click.option("--board", default=None, help="run the firmware on this emulated board (QEMU) "
                                            "instead of the host")
@click.option("--target", default=None, help="on the host, the kernels of this core")
@click.option("--float", "float_model", default=None, type=click.Path(),
              help="also score this float Keras model on the same images")
@click.option("--calibration", default=None,
              help="MODEL is a Keras model: quantise it with this calibration first (default: "
                   "the dataset's training images); its float accuracy is then shown too")
@click.option("--limit", default=None, type=click.IntRange(min=1),
              help=f"evaluate only this many images (default: all on the host, "
                   f"{DEFAULT_BOARD_ROWS} on a board)")
@click.option("--input-range", default="0,1", show_default=True, help=INPUT_RANGE_HELP)
@click.option("--patch", default="auto", show_default=True, help="as for compile")
@arithmetic_option
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="write accuracy and confusion matrix as JSON")
def evaluate(model, dataset, board, target, float_model, calibration, limit, input_range, patch,
             arithmetic, json_path):
    """Top-1 accuracy of MODEL on a labelled dataset, as the generated C computes it (on the
    host, or on an emulated board), with a confusion matrix."""
    lo_hi = _range(input_range)
    if is_keras(model):
        float_model = float_model or model
        model = api.quantize(model, calibration or dataset, input_range=lo_hi)
    elif calibration is not None:
        raise McunetError("--calibration is for a Keras MODEL; this one is a .tflite already")
    compiled = api.compile(model, board=board, target=target, patch=patch, arithmetic=arithmetic)
    b = get_board(board) if board else None
    if b is not None and not b.emulated:
        raise McunetError(f"evaluate runs on the host or an emulated board; {b.name} is a real "
                          "one (use mcunet run with --input on it)")
    start = time.perf_counter()
    result = run_evaluation(compiled, Path(model), dataset, board=b, limit=limit,
                            float_model=Path(float_model) if float_model else None,
                            input_range=lo_hi)
    click.echo(f"top-1 {100 * result.top1:.2f}% of {plural(result.rows, result.split + ' image')} "
               f"on {result.where} (int8, the generated C"
               f"{', bit-exact with ' + compared_with(arithmetic) if result.reference_agrees else ''}) in "
               f"{time.perf_counter() - start:.1f} s")
    if result.reference_agrees is False:
        click.echo(f"warning: the generated code's outputs differ from {compared_with(arithmetic)} "
                   "on these images (a bug in mcunet; please report it)")
    if result.float_top1 is not None:
        click.echo(f"top-1 {100 * result.float_top1:.2f}% for the float model "
                   f"({100 * (result.top1 - result.float_top1):+.2f} points from int8)")
    click.echo(confusion_table(result))
    if json_path:
        Path(json_path).write_text(json.dumps({"model": str(model), "arithmetic": arithmetic,
                                               **result.to_json()}, indent=2))
        click.echo(f"wrote {json_path}")


def _lrs(text: str) -> list[float]:
    try:
        lrs = [float(v) for v in text.split(",")]
    except ValueError:
        raise McunetError(f"--lr {text!r}: give a learning rate or a comma-separated list, "
                          "e.g. 0.01 or 0.003,0.01,0.03") from None
    if not all(v > 0 for v in lrs):
        raise McunetError(f"--lr {text!r}: learning rates are positive")
    return lrs


@cli.command(name="train-plan")
@click.argument("model", type=click.Path())
@click.option("--dataset", required=True,
              help="fashion-mnist, or an .npz of x_train, y_train[, x_test, y_test] (or x, y); "
                   "samples and the validation split come from its training rows")
@click.option("--sram", default=None, help="SRAM budget, e.g. 256KB (default: the board's)")
@click.option("--flash", default=None, help="flash budget, e.g. 1MB (default: the board's)")
@click.option("--board", default=None, help="plan for this board (its core's kernels and "
                                            "stack; its memory as the budget)")
@click.option("--classes", default=None,
              help="train on these classes only, relabelled 0.. in order (e.g. 5-9)")
@click.option("--samples", default=500, show_default=True, type=click.IntRange(min=1),
              help="labelled training samples (drawn at random)")
@click.option("--val", default=500, show_default=True, type=click.IntRange(min=1),
              help="validation rows (other training rows) each scheme is scored on")
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(min=1),
              help="passes over the samples (reshuffled each time, the same order for every "
                   "scheme)")
@click.option("--lr", "lr_text", default="0.01", show_default=True,
              help="learning rate, or a comma-separated list: each scheme keeps its best on "
                   "the validation split")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--scheme", "sparse", multiple=True, metavar="FILE.json",
              help="a sparse scheme's JSON file (docs/training.md) to measure beside the named "
                   "schemes; repeatable")
@click.option("--search/--no-search", default=True, show_default=True,
              help="search sparse updates (per-layer biases and channel ratios) by their "
                   "measured contributions, beside the named schemes")
@click.option("--out", "out", default=None, type=click.Path(), metavar="FILE.json",
              help="where a sparse pick's scheme is written, for --train FILE.json "
                   "(default: MODEL's name with .train.json, in the current directory)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of the table")
def train_plan_cmd(model, dataset, sram, flash, board, classes, samples, val, epochs, lr_text,
                   seed, sparse, search, out, as_json):
    """Choose the training scheme (docs/training.md): train every scheme the compiler accepts
    for MODEL with the NumPy reference (bit-exact with the generated C) on labelled samples,
    score it on a validation split, set its accuracy gain against its training peak SRAM
    (plan --train) and propose the most accurate that fits the budget."""
    from .trainplan import table, train_plan, write_scheme

    start = time.perf_counter()
    # Where a sparse pick goes, checked before the search's minutes of training.
    out = str(check_file(out or f"{Path(model).stem}.train.json", "--out"))
    result = train_plan(model, dataset, sram=sram, flash=flash, board=board,
                        classes=parse_classes(classes), samples=samples, val=val,
                        epochs=epochs, lrs=_lrs(lr_text), seed=seed, schemes=sparse,
                        search=search)
    pick = result.picked
    train_as = pick.scheme
    if pick.sparse is not None:
        train_as = write_scheme(pick, out)
    if as_json:
        click.echo(json.dumps({**result.to_json(), "pick_train": train_as}, indent=2))
        return
    budget = ", ".join(f"{k} {v:,} B" for k, v in (("SRAM", result.sram_bytes),
                                                  ("flash", result.flash_bytes)) if v)
    click.echo(f"train-plan {model}: {plural(samples, 'sample')}, {epochs} epochs, "
               f"{plural(val, 'validation row')}; budget {budget}"
               f"{' on ' + result.board if result.board else ''}")
    click.echo(table(result))
    if pick.sparse is not None:
        click.echo(f"{pick.scheme} written to {train_as}: {json.dumps(pick.sparse)}")
    click.echo(f"pick: --train {train_as} (validation {pick.accuracy_before:.1%} -> "
               f"{pick.accuracy_after:.1%} at lr {pick.lr:g}; training peak SRAM "
               f"{pick.training_peak_sram_bytes:,} B, flash {pick.training_flash_bytes:,} B) "
               f"in {time.perf_counter() - start:.1f} s")


# Commands that live beside their subsystem: boards/cli.py (boards, build, run, deploy) and
# search/cli.py (search, search-and-deploy). Neither imports heavy packages (TensorFlow) at
# module level.
for _command in boards_cli.COMMANDS + search_cli.COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="mcunet", standalone_mode=False)
    except McunetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # bad usage: one line too, exit code 2
        if type(exc).__name__ == "NoArgsIsHelpError":  # `mcunet` alone: the help, as click does
            exc.show()
            sys.exit(exc.exit_code)
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see {exc.ctx.command_path} --help)"
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # a path the user gave: missing, a folder, not writable, ...
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug in mcunet: still one line unless asked for more
        if os.environ.get("MCUNET_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set MCUNET_DEBUG=1 for a "
                   "traceback, and please report it)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

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
from .check import check_against_reference
from .codegen.lower import check_supported
from .compiler import compile_model, load_graph
from .errors import McunetError
from .plot import html_report, memory_png, write_png
from .report import compile_report, inspect_table, io_lines, plan_table, summary_lines
from .search import cli as search_cli
from .host import build_host, load_inputs
from .outdir import check_dir, check_file, make_dir, record

PATCH_HELP = ("patch-based and streamed stages: 'auto' (per section of the network, layer by "
              "layer, a grid of patches or row-by-row streaming, whichever gives the smallest "
              "peak SRAM within --max-overhead, or with --sram/--board the least work that "
              "fits), 'none' (layer by layer), RxC@LAYER (an RxC grid through op LAYER), "
              "RxC@FIRST-LAST or stream@FIRST-LAST, several separated by commas")


def memory_options(fn):
    """--patch, --max-overhead and the budget options shared by plan, compile and simulate."""
    options = [
        click.option("--patch", default="auto", show_default=True, help=PATCH_HELP),
        click.option("--max-overhead", default=15.0, show_default=True, type=float,
                     help="with --patch auto: most extra work (percent of the MACs: recomputed "
                     "halos, and a fixed cost per extra kernel call) the stages may add"),
        click.option("--sram", default=None, help="SRAM budget, e.g. 256KB (fail if over)"),
        click.option("--flash", default=None, help="flash budget for weights, e.g. 1MB"),
        click.option("--board", default=None, help="take the budgets (and the stack) from a "
                     "board; see `mcunet boards`"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _compile(model, patch, max_overhead, sram, flash, board):
    """Compile with the memory options (--max-overhead in percent) and check the budget."""
    return api.compile(model, board=board, patch=patch, sram=sram, flash=flash,
                       max_overhead=max_overhead / 100)


def _memory_figure(model_path, compiled):
    """The layer-by-layer plan beside the chosen one, and their PNG."""
    layerwise = compiled if not compiled.stages else compile_model(
        model_path, patch="none", target=compiled.target.name)
    return layerwise, memory_png(layerwise, compiled, f"{Path(model_path).name}: live arena per layer")


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
def plan(model, patch, max_overhead, sram, flash, board, as_json, png_path, no_png):
    """Plan MODEL's memory: peak SRAM, flash, a per-layer table and a figure."""
    if png_path and not no_png:
        check_file(png_path, "--png")
    compiled = _compile(model, patch, max_overhead, sram, flash, board)
    written = None
    if not no_png:
        layerwise, png = _memory_figure(model, compiled)
        written = write_png(Path(png_path or f"{Path(model).stem}_memory.png"), png)
    if as_json:
        click.echo(json.dumps({"model": str(model), **compiled.summary(),
                               "png": str(written) if written else None,
                               "layers": compiled.layers}, indent=2))
        return
    click.echo(plan_table(compiled))
    click.echo("\n".join(summary_lines(compiled)))
    if written:
        click.echo(f"figure: {written}")


@cli.command(name="compile")
@click.argument("model", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="folder for the generated C library (new, empty, or written by mcunet before)")
@memory_options
def compile_cmd(model, out_dir, patch, max_overhead, sram, flash, board):
    """Turn MODEL into a self-contained C99 library in OUT (with report.md and report.html)."""
    start = time.perf_counter()
    check_dir(out_dir, "--out")
    compiled = _compile(model, patch, max_overhead, sram, flash, board)
    library = compiled.library()
    out = make_dir(out_dir, "--out")
    paths = library.write(out)
    rel = [str(p.relative_to(out)) for p in paths]
    (out / "report.md").write_text(compile_report(compiled, rel))
    layerwise, png = _memory_figure(model, compiled)
    write_png(out / "memory.png", png)
    (out / "report.html").write_text(html_report(compiled, layerwise, png, rel))
    record(out, rel + ["report.md", "memory.png", "report.html"])
    click.echo(f"wrote {len(paths)} files to {out} in {time.perf_counter() - start:.2f} s "
               f"({len(library.kernels)} kernels)")
    click.echo("\n".join(summary_lines(compiled)))
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
@click.option("--check", is_flag=True, help="also run TFLite's reference kernels and compare "
              "every output byte; on a difference, name the first differing layer")
@memory_options
@click.option("--sanitize", is_flag=True, help="build with -fsanitize=address,undefined and "
              "guard bytes around the arena")
def simulate(model, inputs, outputs, random_rows, seed, check, patch, max_overhead, sram, flash,
             board, sanitize):
    """Build MODEL's generated C for this host and run it on inputs."""
    for path in outputs:
        check_file(path, "--output")
    compiled = _compile(model, patch, max_overhead, sram, flash, board)
    arrays = load_inputs(inputs, compiled.graph, random_rows, seed)
    if outputs and len(outputs) != len(compiled.graph.outputs):
        raise McunetError(f"the model has {len(compiled.graph.outputs)} outputs; give as many "
                          f"--output files (got {len(outputs)})")
    start = time.perf_counter()
    results, _ = build_host(compiled, sanitize=sanitize).run(arrays)
    click.echo(f"ran {arrays[0].shape[0]} rows in {time.perf_counter() - start:.2f} s "
               "(including the host build)")
    for path, y in zip(outputs, results):
        np.save(path, y)
        click.echo(f"wrote {path}: {y.shape} {y.dtype}")
    if check:
        result = check_against_reference(model, compiled, arrays, results)
        click.echo(result.summary())
        if not result.exact:
            sys.exit(1)


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
    except Exception as exc:  # a bug in mcunet: still one line unless asked for more
        if os.environ.get("MCUNET_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set MCUNET_DEBUG=1 for a "
                   "traceback, and please report it)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

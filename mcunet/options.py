"""Command-line options shared by the commands of mcunet/cli.py and boards/cli.py: how the
model is compiled (patches, budgets, target, arithmetic) and how its C library meets the
firmware (names, arena placement, version)."""
from __future__ import annotations

import click

from .codegen.library import ARITHMETICS, DEFAULT_ARITHMETIC, DEFAULT_NAME
from .target import TARGETS

PATCH_HELP = ("patch-based and streamed stages: 'auto' (per section of the network, layer by "
              "layer, a grid of patches or row-by-row streaming, whichever gives the smallest "
              "peak SRAM within --max-overhead, or with --sram/--board the least work that "
              "fits), 'none' (layer by layer), RxC@LAYER (an RxC grid through op LAYER), "
              "RxC@FIRST-LAST or stream@FIRST-LAST, several separated by commas")


def _apply(fn, options):
    for option in reversed(options):
        fn = option(fn)
    return fn


def patch_options(fn):
    return _apply(fn, [
        click.option("--patch", default="auto", show_default=True, help=PATCH_HELP),
        click.option("--max-overhead", default=15.0, show_default=True, type=float,
                     help="with --patch auto: most extra work (percent of the model's estimated "
                     "instructions: recomputed halos, every extra kernel call's set-up) the "
                     "stages may add"),
    ])


ARITHMETIC_HELP = ("whose integer arithmetic the generated code reproduces bit for bit: "
                   "'reference' (TFLite's reference kernels) or 'tflm' (TF Lite Micro's, e.g. "
                   "to compare with TFLM on a board: FULLY_CONNECTED's fixed-point rescale, "
                   "RELU6, RELU and MUL differ; docs/arithmetic.md); --check compares with it")


def arithmetic_option(fn):
    """--arithmetic: plan, compile, simulate, build, run and deploy."""
    return click.option("--arithmetic", type=click.Choice(ARITHMETICS),
                        default=DEFAULT_ARITHMETIC, show_default=True, help=ARITHMETIC_HELP)(fn)


def memory_options(fn):
    """--patch, --max-overhead, the budgets, the target and the arithmetic: plan, compile and
    simulate."""
    return _apply(arithmetic_option(patch_options(fn)), [
        click.option("--sram", default=None, help="SRAM budget, e.g. 256KB (fail if over)"),
        click.option("--flash", default=None, help="flash budget for the library (weights, "
                     "constants and code), e.g. 1MB"),
        click.option("--board", default=None, help="compile for a board (see `mcunet boards`): "
                     "its core's kernels (the DSP ones on Cortex-M4/M7), its free SRAM and flash "
                     "as the budget, its core's stack counted in the peak"),
        click.option("--target", default=None, help="compile for a core without a board: "
                     f"{', '.join(TARGETS)} (that core's kernels, stack and code size; "
                     "default: the board's core, else host: portable C)"),
    ])


def library_options(fn):
    """How the generated library is named and where its arena lives: compile and build."""
    return _apply(fn, [
        click.option("--name", "lib_name", default=DEFAULT_NAME, show_default=True,
                     help="prefix of every symbol, macro and file of the library (kws: "
                          "kws_invoke(), KWS_ARENA_BYTES, kws_model.h), so that several models "
                          "link into one firmware"),
        click.option("--arena-section", default=None,
                     help="linker section for the arena, e.g. .bss.dtcm (a .bss.* name stays "
                          "out of the image; other names need a NOLOAD section in your linker "
                          "script)"),
        click.option("--external-arena", is_flag=True,
                     help="no static arena: the firmware passes one with "
                          "NAME_set_arena(buffer, bytes)"),
        click.option("--lib-version", default="1.0.0", show_default=True,
                     help="the library's version in library.json, library.properties and "
                          "CMakeLists.txt (a digest of the generated code is appended)"),
    ])


def library_kwargs(lib_name, arena_section, external_arena, lib_version) -> dict:
    return {"name": lib_name, "arena_section": arena_section, "external_arena": external_arena,
            "lib_version": lib_version}


def tune_option(fn):
    """--tune: compile, build and run."""
    return click.option("--tune", is_flag=True,
                        help="measure each layer's kernel variants and blockings on the emulated "
                             "board of the core first and keep the fastest (cached by layer: "
                             "later compiles for that core use them; docs/boards.md)")(fn)



def tune_first(model, board=None, target=None, arithmetic: str = DEFAULT_ARITHMETIC) -> None:
    """What --tune does before a command compiles: measure, say what was found."""
    from . import api
    from .progress import progress

    with progress("tuning the kernels on the emulated board"):
        report = api.tune_kernels(model, board=board, target=target, arithmetic=arithmetic)
    click.echo(report.summary())

"""The Python API (see docs/python-api.md):

    import mcunet
    m = mcunet.compile("model.tflite", board="mps2-an386")
    m.peak_sram_bytes, m.flash_bytes, m.macs, m.layers
    m.write("lib/")
    outputs = mcunet.simulate(m, inputs)

The CLI's plan, compile and simulate commands, and the boards' build/run commands, compile
through `compile` here, so a script and the command line get the same model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .boards import BOARDS, Board, core_target, get_board
from .budget import Fit, fit, not_fitting, resolve
from .codegen.library import DEFAULT_ARITHMETIC, DEFAULT_NAME, LibraryOptions
from .boards.tune import tune_graph
from .compiler import CompiledModel, compile_model, load_graph
from .errors import McunetError
from .footprint import cache_folder
from .patch import DEFAULT_MAX_OVERHEAD
from .host import build_host
from .progress import progress
from .search.data import calibration_inputs
from .search.export import input_shape, is_keras, load_keras, quantize_keras
from .target import Target, get_target


def compile(model: str | Path, *, board: str | Board | None = None,
            target: str | Target | None = None, patch: str = "auto",
            sram: str | int | None = None, flash: str | int | None = None,
            max_overhead: float = DEFAULT_MAX_OVERHEAD, name: str = DEFAULT_NAME,
            arena_section: str | None = None, external_arena: bool = False,
            lib_version: str = "1.0.0", arithmetic: str = DEFAULT_ARITHMETIC,
            tune: bool = False, train: str | None = None) -> CompiledModel:
    """Compile an int8 .tflite file for a board or a target core.

    board: a name from `mcunet boards` (its core's kernels, its free SRAM and flash as the
    budget, and its core's stack counted in peak_sram_bytes); target: a core without a board
    ("cortex-m4", "host"; see mcunet.target.TARGETS), default the host; patch: "auto", "none"
    or explicit stages ("RxC@LAYER", "RxC@FIRST-LAST", "stream@FIRST-LAST", comma-separated);
    sram/flash: budgets ("256KB", or bytes) that win over the board's (with an SRAM budget,
    "auto" takes the plan of least work that fits rather than the smallest);
    max_overhead: with patch "auto", the most extra work the stages may add (a fraction of
    the model's estimated instructions: recomputed halos, every extra kernel call's set-up);
    name: the prefix of the library's symbols, macros and files (kws: kws_invoke(),
    KWS_ARENA_BYTES, kws_model.h); arena_section: a linker section for the arena;
    external_arena: the firmware passes the arena (name_set_arena); lib_version: the
    library's version in its build files; arithmetic: "reference" (bit-exact with TFLite's
    reference kernels) or "tflm" (with TF Lite Micro's; docs/arithmetic.md); tune: first
    measure each layer's kernel candidates on the emulated board of the core
    (`tune_kernels`); train: a training scheme ("head", "bias": mcunet.training,
    docs/training.md): the library gets name_train_step(), the plan layer by layer keeps what
    the step reads, and peak_sram_bytes counts the training state.
    Raises McunetError on bad input or when the model does not fit the budget."""
    if tune:
        tune_kernels(model, board=board, target=target, arithmetic=arithmetic)
    compiled = compile_unchecked(model, board=board, target=target, patch=patch, sram=sram,
                                 flash=flash, max_overhead=max_overhead, name=name,
                                 arena_section=arena_section, external_arena=external_arena,
                                 lib_version=lib_version, arithmetic=arithmetic, train=train)
    result = fit(compiled, compiled.budget)
    if not result.fits:
        raise McunetError(not_fitting(result, advice(model, compiled, result, patch,
                                                     max_overhead)))
    return compiled


def advice(model: str | Path, compiled: CompiledModel, result: Fit, patch: str,
           max_overhead: float) -> str:
    """What would help a model that does not fit, and only that: patch-based inference when
    it was off (or limited) and lowers the peak (planned here to say by how much), a smaller
    input for SRAM, fewer weights for flash, and the boards with that much memory free."""
    hints = []
    if result.sram_over:
        tried, option = None, ""
        if patch != "auto":
            tried = compile_model(model, patch="auto", target=compiled.target,
                                  max_overhead=max_overhead, options=compiled.options)
            option = "--patch auto"
        elif max_overhead < 10:  # auto within a limit: would more extra work lower the peak?
            wider = compile_model(model, patch="auto", target=compiled.target, max_overhead=10,
                                  options=compiled.options)
            if wider.patch is not None:
                tried = wider
                option = f"--max-overhead {math.ceil(100 * wider.overhead)}"
        if tried is not None and tried.peak_sram_bytes < compiled.peak_sram_bytes:
            fits = tried.peak_sram_bytes <= result.budget.sram_bytes
            hints.append(f"{option} (peak {tried.peak_sram_bytes:,} bytes"
                         f"{', which fits' if fits else ''})")
        hints.append("a smaller input resolution or width")
    if result.flash_over:
        hints.append("fewer or narrower layers (fewer weights)")
    roomy = [b.name for b in BOARDS.values()
             if b.sram_bytes >= result.sram_bytes and b.flash_bytes >= result.flash_bytes
             and not b.emulated]
    hints.append("a board with more memory" + (f" ({', '.join(roomy[:3])} have that much free)"
                                               if roomy and result.budget.board else ""))
    return ", or ".join(hints)


def compile_unchecked(model: str | Path, *, board: str | Board | None = None,
                      target: str | Target | None = None, patch: str = "auto",
                      sram: str | int | None = None, flash: str | int | None = None,
                      max_overhead: float = DEFAULT_MAX_OVERHEAD, name: str = DEFAULT_NAME,
                      arena_section: str | None = None, external_arena: bool = False,
                      lib_version: str = "1.0.0", arithmetic: str = DEFAULT_ARITHMETIC,
                      train: str | None = None) -> CompiledModel:
    """compile() without the budget check: the best plan, with the budget it is held to
    (`mcunet plan` reports a plan that does not fit)."""
    if not 0 <= max_overhead <= 10:
        raise McunetError(f"max_overhead {max_overhead:g} is not a fraction of the MACs "
                          "(0.15 allows 15% more)")
    options = LibraryOptions(name=name, arena_section=arena_section,
                             external_arena=external_arena, version=lib_version,
                             arithmetic=arithmetic)
    b = get_board(board) if isinstance(board, str) else board
    if b is not None and target is not None and get_target(target).name != b.core:
        raise McunetError(f"board {b.name} has a {b.core}, not the target {get_target(target).name}; "
                          "give one of --board and --target")
    budget = resolve(None if sram is None else str(sram), None if flash is None else str(flash), b)
    target = budget.target or core_target(target)
    # With an SRAM budget, `auto` takes the plan of least work whose arena fits it; where the
    # kernels' stack then tips it over, the smallest plan.
    # With a flash budget, the convolutions' filters widened to int16 where it has room
    # (compile_graph).
    compiled = compile_model(model, patch=patch, target=target, max_overhead=max_overhead,
                             sram_budget=budget.sram_bytes, options=options, train=train,
                             flash_budget=budget.flash_bytes)
    if (budget.sram_bytes is not None and compiled.peak_sram_bytes > budget.sram_bytes
            and compiled.stack_bytes):
        compiled = compile_model(model, patch=patch, target=target, max_overhead=max_overhead,
                                 options=options, train=train, flash_budget=budget.flash_bytes)
    return dataclasses.replace(compiled, budget=budget)


def tune_kernels(model: str | Path, *, board: str | Board | None = None,
         target: str | Target | None = None, arithmetic: str = DEFAULT_ARITHMETIC):
    """Measure each layer's kernel candidates (variants and blockings) on the emulated board
    of the core (mps2-an386 for a Cortex-M4, ...; mcunet.boards.tune) and cache the fastest
    by layer signature: every later compile for that core uses them. Layers the cache holds
    are not measured again. Returns the TuneReport (the measured choices beside the cost
    model's)."""
    b = get_board(board) if isinstance(board, str) else board
    core = b.core if b is not None else get_target(target).name
    return tune_graph(load_graph(model), core, LibraryOptions(arithmetic=arithmetic))


def simulate(model: CompiledModel | str | Path, inputs: np.ndarray | Sequence[np.ndarray], *,
             sanitize: bool = False) -> list[np.ndarray]:
    """Run the generated C on the host on every row of the inputs (one batched array per
    model input, shape (N, *input_shape[1:]), the model's dtype); returns the batched
    outputs. A path is compiled for the host first."""
    compiled = model if isinstance(model, CompiledModel) else compile(model)
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    outputs, _ = build_host(compiled, sanitize=sanitize).run(arrays)
    return outputs


DEFAULT_CALIBRATION_SAMPLES = 200


def quantize(model: str | Path, calibration: str, out: str | Path | None = None, *,
             float_io: bool = False, samples: int = DEFAULT_CALIBRATION_SAMPLES,
             input_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    """Full int8 post-training quantisation of a Keras model (.keras, .h5) or a SavedModel
    folder with TF's converter, calibrated on `calibration`: an .npy of float inputs, or a
    dataset (fashion-mnist, a folder of class folders, an .npz) whose images are resized to
    the model's input and scaled to input_range. int8 input and output unless float_io.
    Writes `out` (default: a cache file named by the model and the calibration) and returns
    its path. Imports TensorFlow (only this does)."""
    path = Path(model)
    if not path.exists():
        raise McunetError(f"no such file or folder: {path}")
    if not is_keras(path):
        raise McunetError(f"{path} is not a Keras model (.keras, .h5) or a SavedModel folder "
                          "(with saved_model.pb)")
    if samples < 1:
        raise McunetError("--samples must be at least 1")
    if out is None:
        digest = hashlib.sha256()
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                digest.update(str(f.relative_to(path.parent)).encode() + f.read_bytes())
        digest.update(repr((calibration, float_io, samples, input_range)).encode())
        out = cache_folder("quantized") / f"{path.stem}-{digest.hexdigest()[:16]}.tflite"
        if out.is_file():
            return out
    out = Path(out)
    with progress(f"quantising {path.name} to int8 with TF's converter"):
        shape = input_shape(load_keras(path))
        data = quantize_keras(path, calibration_inputs(calibration, shape, samples, input_range),
                              float_io=float_io)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def resolve_model(model: str | Path, calibration: str | None = None) -> Path:
    """The .tflite to compile: the model itself, or a Keras model / SavedModel quantised with
    `calibration` (mcunet.quantize, cached)."""
    path = Path(model)
    if is_keras(path):
        if calibration is None:
            raise McunetError(f"{path} is a Keras model: give --calibration X.npy or a dataset "
                              "(e.g. fashion-mnist) to quantise it to int8 with, or quantise it "
                              "first with mcunet quantize")
        return quantize(path, calibration)
    if calibration is not None:
        raise McunetError("--calibration is for Keras models and SavedModels; "
                          f"{path.name} is compiled as it is")
    return path

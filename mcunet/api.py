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

from pathlib import Path
from typing import Sequence

import numpy as np

from .boards import Board, get_board
from .budget import check, resolve
from .compiler import CompiledModel, compile_model
from .errors import McunetError
from .patch import DEFAULT_MAX_OVERHEAD
from .host import build_host
from .target import Target, get_target


def compile(model: str | Path, *, board: str | Board | None = None,
            target: str | Target | None = None, patch: str = "auto",
            sram: str | int | None = None, flash: str | int | None = None,
            max_overhead: float = DEFAULT_MAX_OVERHEAD) -> CompiledModel:
    """Compile an int8 .tflite file for a board or a target core.

    board: a name from `mcunet boards` (its core's kernels, its free SRAM and flash as the
    budget, and its core's stack counted in peak_sram_bytes); target: a core without a board
    ("cortex-m4", "host"; see mcunet.target.TARGETS), default the host; patch: "auto", "none"
    or explicit stages ("RxC@LAYER", "RxC@FIRST-LAST", "stream@FIRST-LAST", comma-separated);
    sram/flash: budgets ("256KB", or bytes) that win over the board's (with an SRAM budget,
    "auto" takes the plan of least work that fits rather than the smallest);
    max_overhead: with patch "auto", the most extra work the stages may add (a fraction of
    the MACs: recomputed halos plus a fixed cost per extra kernel call).
    Raises McunetError on bad input or when the model does not fit the budget."""
    if not 0 <= max_overhead <= 10:
        raise McunetError(f"max_overhead {max_overhead:g} is not a fraction of the MACs "
                          "(0.15 allows 15% more)")
    b = get_board(board) if isinstance(board, str) else board
    if b is not None and target is not None and get_target(target).name != b.core:
        raise McunetError(f"board {b.name} has a {b.core}, not the target {get_target(target).name}; "
                          "give one of --board and --target")
    budget = resolve(None if sram is None else str(sram), None if flash is None else str(flash), b)
    target = budget.target or get_target(target)
    # With an SRAM budget, `auto` takes the plan of least work whose arena fits it; where the
    # kernels' stack then tips it over, the smallest plan.
    compiled = compile_model(model, patch=patch, target=target, max_overhead=max_overhead,
                             sram_budget=budget.sram_bytes)
    if (budget.sram_bytes is not None and compiled.peak_sram_bytes > budget.sram_bytes
            and compiled.stack_bytes):
        compiled = compile_model(model, patch=patch, target=target, max_overhead=max_overhead)
    check(compiled, budget)
    return compiled


def simulate(model: CompiledModel | str | Path, inputs: np.ndarray | Sequence[np.ndarray], *,
             sanitize: bool = False) -> list[np.ndarray]:
    """Run the generated C on the host on every row of the inputs (one batched array per
    model input, shape (N, *input_shape[1:]), the model's dtype); returns the batched
    outputs. A path is compiled for the host first."""
    compiled = model if isinstance(model, CompiledModel) else compile(model)
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    outputs, _ = build_host(compiled, sanitize=sanitize).run(arrays)
    return outputs

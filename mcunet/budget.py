"""Budgets: SRAM, flash (and for the search, latency and compute) from --sram/--flash or a
board; the one size parser; and the check that fails a compile with what is needed, what is
available and what would help. plan, compile, search and boards all use these."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from .errors import McunetError
from .target import Target

UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20,
         "mib": 1 << 20}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*")
MAX_BUDGET = 1 << 32  # a microcontroller addresses its memory in 32 bits


def parse_size(text: str | int | None) -> int | None:
    """'32KB', '320k', '1.5MB', '40960' -> bytes (K = 1024); None stays None. A size is a
    positive decimal number of bytes, KB or MB (no exponents), at most 4 GiB."""
    if text is None:
        return None
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE.fullmatch(str(text))
        if not m or m.group(2).lower() not in UNITS:
            raise McunetError(f"cannot read {text!r} as a size: write bytes or KB/MB, e.g. 32KB")
        value = int(float(m.group(1)) * UNITS[m.group(2).lower()])
    if value <= 0:
        raise McunetError(f"a size must be at least one byte, not {text!r}")
    if value > MAX_BUDGET:
        raise McunetError(f"{text!r} is more than 4 GiB; a microcontroller addresses its memory "
                          "in 32 bits")
    return value


class BoardLimits(Protocol):
    """What a budget takes from a board (mcunet.boards.Board)."""
    name: str
    sram_bytes: int
    flash_bytes: int

    @property
    def target(self) -> Target: ...


@dataclass(frozen=True)
class Budget:
    sram_bytes: int | None = None
    flash_bytes: int | None = None
    latency_ms: float | None = None
    clock_hz: int | None = None  # to turn MACs into an estimated latency (the search)
    # int8 MACs per cycle, for the search's latency estimate: conservative; the DSP kernels
    # execute about 2.4 instructions per MAC of a searched network on the emulated M4, and
    # loads and multiply-accumulates can take more than one cycle.
    macs_per_cycle: float = 0.25
    max_macs: int | None = None  # a compute cap (what training in the time budget affords)
    target: Target | None = None  # the core the limits are for, when a board gives them
    board: str | None = None  # the board's name
    sram_from_board: bool = False  # False where --sram (or no board) set sram_bytes
    flash_from_board: bool = False

    def where(self, from_board: bool) -> str:
        return f"board {self.board}" if from_board else "the budget"


def resolve(sram: str | None, flash: str | None, board: BoardLimits | None) -> Budget:
    """--sram/--flash win over the board's figures."""
    return Budget(sram_bytes=parse_size(sram) if sram is not None else
                  (board.sram_bytes if board else None),
                  flash_bytes=parse_size(flash) if flash is not None else
                  (board.flash_bytes if board else None),
                  target=board.target if board else None, board=board.name if board else None,
                  sram_from_board=bool(board and sram is None),
                  flash_from_board=bool(board and flash is None))


def check(model, budget: Budget) -> None:
    """Raise McunetError when the compiled model does not fit the budget."""
    problems = []
    if budget.sram_bytes is not None and model.peak_sram_bytes > budget.sram_bytes:
        over = model.peak_sram_bytes - budget.sram_bytes
        plan = f"stages {model.schedule}" if model.stages else "layer by layer"
        problems.append(
            f"needs {model.peak_sram_bytes:,} bytes of SRAM but "
            f"{budget.where(budget.sram_from_board)} has "
            f"{budget.sram_bytes:,} ({over:,} over; best plan found: {plan}, layer-wise lower "
            f"bound {model.plan.lower_bound:,})")
    if budget.flash_bytes is not None and model.flash_bytes > budget.flash_bytes:
        over = model.flash_bytes - budget.flash_bytes
        problems.append(f"needs {model.flash_bytes:,} bytes of flash for weights but "
                        f"{budget.where(budget.flash_from_board)} has {budget.flash_bytes:,} "
                        f"({over:,} over)")
    if problems:
        hint = ("try --patch auto, a larger --max-overhead, a smaller input resolution or width, "
                "or a board with more memory") if not model.stages else \
            "try a smaller input resolution or width, or a board with more memory"
        raise McunetError(f"the model does not fit: it {'; and it '.join(problems)}. To fit, {hint}")

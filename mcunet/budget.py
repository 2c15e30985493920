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
    clock_hz: int

    @property
    def target(self) -> Target: ...


@dataclass(frozen=True)
class Budget:
    sram_bytes: int | None = None
    flash_bytes: int | None = None
    latency_ms: float | None = None
    clock_hz: int | None = None  # to turn MACs into an estimated latency (the search)
    # int8 MACs per cycle, for the search's latency estimate where the cost model has no
    # estimate (mcunet.costmodel: cores it was not measured on): conservative.
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
                  clock_hz=board.clock_hz if board else None,
                  target=board.target if board else None, board=board.name if board else None,
                  sram_from_board=bool(board and sram is None),
                  flash_from_board=bool(board and flash is None))


def usage(used: int, available: int | None) -> str:
    """'29,884 of 114,688 B (26%), 84,804 B headroom' (or over by how much)."""
    if available is None:
        return f"{used:,} B (no budget)"
    share = f"{100 * used / available:.0f}%" if available else "-"
    if used > available:
        return f"{used:,} of {available:,} B ({share}), {used - available:,} B over"
    return f"{used:,} of {available:,} B ({share}), {available - used:,} B headroom"


@dataclass(frozen=True)
class Fit:
    """A compiled model against its budget: what it needs, what there is, what is over."""
    sram_bytes: int  # peak SRAM: arena (+ the target's stack)
    flash_bytes: int  # the library's flash: constant data, plus the code where known
    flash_counts_code: bool  # flash_bytes includes the library's code
    budget: Budget
    problems: tuple[str, ...]  # one sentence per limit broken

    @property
    def fits(self) -> bool:
        return not self.problems

    @property
    def sram_over(self) -> bool:
        return self.budget.sram_bytes is not None and self.sram_bytes > self.budget.sram_bytes

    @property
    def flash_over(self) -> bool:
        return self.budget.flash_bytes is not None and self.flash_bytes > self.budget.flash_bytes

    def headroom(self) -> dict:
        b = self.budget
        return {"board": b.board, "fits": self.fits,
                "sram_budget_bytes": b.sram_bytes, "flash_budget_bytes": b.flash_bytes,
                "sram_headroom_bytes": None if b.sram_bytes is None else
                b.sram_bytes - self.sram_bytes,
                "flash_headroom_bytes": None if b.flash_bytes is None else
                b.flash_bytes - self.flash_bytes}


def fit(model, budget: Budget | None) -> Fit:
    """How the compiled model stands against the budget (SRAM: its peak; flash: its constant
    data and, where the target measures it, its code)."""
    budget = budget or Budget()
    total = model.flash_total_bytes if budget.flash_bytes is not None else None
    flash = total if total is not None else model.flash_bytes
    problems = []
    if budget.sram_bytes is not None and model.peak_sram_bytes > budget.sram_bytes:
        over = model.peak_sram_bytes - budget.sram_bytes
        stack = f" (arena {model.plan.arena_bytes:,} + stack {model.stack_bytes:,})" \
            if model.stack_bytes else ""
        plan = f"stages {model.schedule}" if model.stages else "layer by layer"
        problems.append(
            f"needs {model.peak_sram_bytes:,} bytes of SRAM{stack} but "
            f"{budget.where(budget.sram_from_board)} has "
            f"{budget.sram_bytes:,} ({over:,} over; best plan found: {plan}, layer-wise lower "
            f"bound {model.plan.lower_bound:,})")
    if budget.flash_bytes is not None and flash > budget.flash_bytes:
        over = flash - budget.flash_bytes
        parts = (f" ({model.flash_bytes:,} of weights and constants + {model.code_bytes:,} of "
                 f"code for {model.target.name})") if total is not None else \
            " for weights and constants"
        problems.append(f"needs {flash:,} bytes of flash{parts} but "
                        f"{budget.where(budget.flash_from_board)} has {budget.flash_bytes:,} "
                        f"({over:,} over)")
    return Fit(model.peak_sram_bytes, flash, total is not None, budget, tuple(problems))


def check(model, budget: Budget, advice: str | None = None) -> Fit:
    """The fit; McunetError when the compiled model does not fit the budget, with `advice`
    (what would help: mcunet.api works it out) or the general kind."""
    result = fit(model, budget)
    if not result.fits:
        raise McunetError(not_fitting(result, advice))
    return result


def not_fitting(result: Fit, advice: str | None = None) -> str:
    if advice is None:
        hints = []
        if result.sram_over:
            hints.append("a smaller input resolution or width")
        if result.flash_over:
            hints.append("fewer or narrower layers (fewer weights)")
        hints.append("a board with more memory")
        advice = ", or ".join(hints)
    return f"the model does not fit: it {'; and it '.join(result.problems)}. To fit, try {advice}"

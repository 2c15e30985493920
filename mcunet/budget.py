"""SRAM and flash budgets: from --sram/--flash or a board, and the check that fails a compile
with what is needed, what is available and what would help."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import McunetError

UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20,
         "mib": 1 << 20}


MAX_BUDGET = 1 << 32  # a microcontroller addresses its memory in 32 bits


def parse_size(text: str | int | None) -> int | None:
    """'32KB', '320k', '1.5MB', '40960' -> bytes (K = 1024), at most 4 GiB."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in UNITS:
        raise McunetError(f"cannot read {text!r} as a size: write bytes or KB/MB, e.g. 32KB")
    size = int(float(m.group(1)) * UNITS[m.group(2).lower()])
    if size > MAX_BUDGET:
        raise McunetError(f"{text!r} is more than 4 GiB; a microcontroller addresses its memory "
                          "in 32 bits")
    return size


@dataclass(frozen=True)
class Budget:
    sram_bytes: int | None = None
    flash_bytes: int | None = None
    board: object | None = None  # boards.Board, when the budget comes from a board
    sram_from_board: bool = False  # False where --sram (or no board) set sram_bytes
    flash_from_board: bool = False

    def where(self, from_board: bool) -> str:
        return f"board {self.board.name}" if from_board else "the budget"


def resolve(sram: str | None, flash: str | None, board: str | None) -> Budget:
    """--sram/--flash win over the board's figures."""
    b = None
    if board is not None:
        try:
            from mcunet.boards import get_board
        except ImportError:
            raise McunetError("board support is not installed (the boards package is missing)") \
                from None
        b = get_board(board)
    return Budget(sram_bytes=parse_size(sram) if sram is not None else (b.sram_bytes if b else None),
                  flash_bytes=parse_size(flash) if flash is not None else (b.flash_bytes if b else None),
                  board=b, sram_from_board=bool(b and sram is None),
                  flash_from_board=bool(b and flash is None))


def check(model, budget: Budget) -> None:
    """Raise McunetError when the compiled model does not fit the budget."""
    problems = []
    if budget.sram_bytes is not None and model.peak_sram_bytes > budget.sram_bytes:
        over = model.peak_sram_bytes - budget.sram_bytes
        plan = f"patches {model.patch.spec}" if model.patch else "layer by layer"
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
                "or a board with more memory") if model.patch is None else \
            "try a smaller input resolution or width, or a board with more memory"
        raise McunetError(f"the model does not fit: it {'; and it '.join(problems)}. To fit, {hint}")

"""What the generated code runs on: a core's instruction sets (which kernel variants apply)
and, where one is known, how to bound the library's stack on it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import McunetError
from .step import ARM_DSP, PORTABLE

# The library's files (path -> text) -> the deepest stack of mcunet_invoke, in bytes.
StackBound = Callable[[dict[str, str]], int]


@dataclass(frozen=True)
class Target:
    name: str  # "host", or gcc's -mcpu of an Arm core ("cortex-m4")
    isas: frozenset[str]
    stack_bound: StackBound | None = None  # boards supply one (arm-none-eabi-gcc -fstack-usage)

    @property
    def dsp(self) -> bool:
        """The Arm DSP extension's kernels (SMLAD/SXTB16) apply."""
        return ARM_DSP in self.isas


def _target(name: str, *isas: str) -> Target:
    return Target(name, frozenset((PORTABLE,) + isas))


HOST = _target("host")
TARGETS: dict[str, Target] = {t.name: t for t in [
    HOST,
    _target("cortex-m0plus"),
    _target("cortex-m3"),
    _target("cortex-m4", ARM_DSP),
    _target("cortex-m7", ARM_DSP),
    _target("cortex-m33", ARM_DSP),
    _target("cortex-m55", ARM_DSP),
]}


def get_target(target: str | Target | None) -> Target:
    if target is None:
        return HOST
    if isinstance(target, Target):
        return target
    key = target.strip().lower()
    if key not in TARGETS:
        raise McunetError(f"unknown target '{target}'; known targets: {', '.join(TARGETS)}")
    return TARGETS[key]

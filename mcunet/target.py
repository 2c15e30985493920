"""What the generated code runs on: a core's instruction sets (which kernel variants apply)
and, where one is known, how to measure the library's footprint on it (its deepest stack and
its code bytes: mcunet.footprint)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import McunetError
from .footprint import Footprint, host_footprint
from .step import ARM_DSP, PORTABLE

# The library's files (path -> text) -> its stack and code bytes on the target.
FootprintOf = Callable[[dict[str, str]], Footprint]


@dataclass(frozen=True)
class Target:
    name: str  # "host", or gcc's -mcpu of an Arm core ("cortex-m4")
    isas: frozenset[str]
    # Arm cores get one from mcunet.boards (Arm GCC's -fstack-usage and object sizes, or a
    # table); without one, a compile knows neither the stack nor the code size.
    footprint: FootprintOf | None = None
    bounds_stack: bool = True  # False: the footprint's stack is not a bound (the host's)

    @property
    def dsp(self) -> bool:
        """The Arm DSP extension's kernels (SMLAD/SXTB16) apply."""
        return ARM_DSP in self.isas

    @property
    def kernels(self) -> str:
        """Which kernels the target gets, in words."""
        return "Cortex-M DSP (SMLAD/SXTB16) where they apply, portable C elsewhere" \
            if self.dsp else "portable C"


def _target(name: str, *isas: str) -> Target:
    return Target(name, frozenset((PORTABLE,) + isas))


# The host's stack is not bounded (the host is for simulation); its code bytes come from its
# own C compiler.
HOST = Target("host", frozenset((PORTABLE,)), footprint=host_footprint, bounds_stack=False)
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
    if key not in TARGETS and f"cortex-{key}" in TARGETS:  # "m4" for "cortex-m4"
        key = f"cortex-{key}"
    if key not in TARGETS:
        raise McunetError(f"unknown target '{target}'; known targets: {', '.join(TARGETS)}")
    return TARGETS[key]

"""The lowered-step IR: what the planner, the patch scheduler and the code generator share.

Lowering (mcunet.codegen) turns each graph op into one Step: the kernel that computes it,
the layer's typed parameters (mcunet.layers) and its arguments in call order. A Step is
immutable; rewrites (patches, fused ADDs, kernel variants) return new ones.

A `Kernel` is a record, not a string: its template, the instruction set it needs, when it
applies, how much scratch it takes and how its output may overlap its inputs. The records
themselves live in mcunet.codegen.kernels (the registry); this module defines their type so
that the core can plan with them without depending on the code generator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .graph import Op
from .layers import Layer, Windowed

ALIGN = 4  # scratch buffers are whole 4-byte words

# Instruction sets a kernel may need. Every family has a PORTABLE kernel (plain C99).
PORTABLE = "portable"
ARM_DSP = "arm-dsp"  # ARMv7E-M's DSP extension: SMLAD, SXTB16, ... (Cortex-M4/M7/M33/M55)


def _always(layer: Layer) -> bool:
    return True


def _no_constants(layer: Layer) -> dict:
    return {}


def _one_pixel(layer: Layer) -> int:
    return 1


# ---------------------------------------------------------------------------------------------
# How a kernel's output may share bytes with its inputs (the planner's permissions)


@dataclass(frozen=True)
class NoOverlap:
    """The output never shares a byte with an input."""


@dataclass(frozen=True)
class RasterOrder:
    """A windowed kernel writes output pixels in raster order, `block(layer)` at a time, and
    finishes reading the windows of a block's pixels before writing any of them: its output
    may start below its dense int8 input by mcunet.memory.window_max_delta bytes. With a
    fused residual ADD, the sum may be written over the residual instead (in place)."""
    block: Callable[[Layer], int] = _one_pixel


@dataclass(frozen=True)
class InPlace:
    """The output is written exactly over the input (same offset), as the depthwise plane
    kernels do: they copy each channel plane to scratch before overwriting it."""


@dataclass(frozen=True)
class Elementwise:
    """Element i of the output is written after element i of each input was read, and no
    other input element is read later: the output may sit exactly over an input of its size."""


OverlapRule = NoOverlap | RasterOrder | InPlace | Elementwise


@dataclass(frozen=True)
class Scratch:
    """A kernel's scratch buffer in the arena: passed as `ctype *restrict name`, bytes(layer)
    long (rounded up to whole words)."""
    name: str
    ctype: str
    bytes: Callable[[Layer], int]


@dataclass(frozen=True, eq=False)
class Kernel:
    """One C kernel: `family` names the computation (variants of one family take the same
    arguments and compute the same integers), `template` renders it for a layer."""
    name: str  # the stem of the generated function names: mcunet_<name>_<n>
    family: str
    template: str  # under templates/kernels/
    isa: str = PORTABLE
    applies: Callable[[Layer], bool] = _always
    scratch: Scratch | None = None
    overlap: OverlapRule = NoOverlap()
    constants: Callable[[Layer], dict] = _no_constants  # the variant's own template values
    # The blockings the tuner may try for a layer: name -> values (the layer's `tuning` picks
    # one; mcunet.tune). Empty: the variant has one form.
    tunables: Callable[[Layer], dict[str, tuple[int, ...]]] = _no_constants

    def scratch_bytes(self, layer: Layer) -> int:
        if self.scratch is None:
            return 0
        return (self.scratch.bytes(layer) + ALIGN - 1) // ALIGN * ALIGN

    def __repr__(self) -> str:
        return f"Kernel({self.name})"


# ---------------------------------------------------------------------------------------------
# Arguments and steps


@dataclass(frozen=True)
class TensorArg:
    """An activation tensor, passed as a typed pointer into the arena: read (`const T *`) or,
    with `output`, written."""
    tid: int
    name: str  # the kernel's parameter name
    output: bool = False
    offset: int = 0  # elements from the tensor's start (a patch's corner in a wider tensor)


@dataclass(frozen=True)
class ConstArg:
    """A constant array in flash (weights, biases, multipliers, tables, constant operands)."""
    symbol: str
    name: str  # the kernel's parameter name
    ctype: str


Arg = TensorArg | ConstArg


@dataclass(frozen=True)
class ConstArray:
    symbol: str
    ctype: str
    values: np.ndarray  # flattened

    @property
    def nbytes(self) -> int:
        return int(self.values.size * self.values.dtype.itemsize)


@dataclass(frozen=True)
class Step:
    op: Op
    kernel: Kernel | None  # None for a view (no code: the output reuses its input's bytes)
    layer: Layer | None = None
    args: tuple[Arg, ...] = ()  # in the kernel's parameter order (its scratch comes last)
    macs: int = 0
    view_of: int | None = None  # for views: the tensor whose bytes this op's output reuses
    # Tensors a trace build reports after this step: the op's outputs, unless the step
    # computes only part of them (a patch), when only the step completing them reports.
    trace: tuple[int, ...] | None = None

    @property
    def inputs(self) -> tuple[TensorArg, ...]:
        return tuple(a for a in self.args if isinstance(a, TensorArg) and not a.output)

    @property
    def outputs(self) -> tuple[TensorArg, ...]:
        return tuple(a for a in self.args if isinstance(a, TensorArg) and a.output)

    @property
    def reads(self) -> list[int]:
        if self.view_of is not None:
            return [self.view_of]
        return [a.tid for a in self.inputs]

    @property
    def writes(self) -> list[int]:
        if self.view_of is not None:
            return list(self.op.outputs)
        return [a.tid for a in self.outputs]

    @property
    def scratch_bytes(self) -> int:
        return self.kernel.scratch_bytes(self.layer) if self.kernel else 0

    @property
    def traced(self) -> list[int]:
        return list(self.op.outputs) if self.trace is None else list(self.trace)

    @property
    def whole_tensors(self) -> bool:
        """Every tensor argument is a whole tensor (no patch offsets, dense rows)."""
        if any(a.offset for a in self.inputs + self.outputs):
            return False
        return not isinstance(self.layer, Windowed) or self.layer.window.dense


"""What lowering produces: one Step per graph op, naming a kernel template and its arguments.

Each op module in codegen/ops registers a function ``lower(op, ctx) -> Step`` with
``@lowers("OP_NAME")``. A Step is pure data: the planner reads its reads/writes/scratch,
and codegen.library renders it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mcunet.errors import McunetError
from mcunet.graph import C_TYPES, Graph, Op, Tensor


@dataclass(frozen=True)
class TensorArg:
    """An activation tensor, passed to the kernel as a typed pointer into the arena."""
    tid: int
    const: bool = False  # pass as `const T *`
    offset: int = 0  # elements from the tensor's start (a patch's corner in a wider tensor)


@dataclass(frozen=True)
class ConstArg:
    """A constant array in flash (weights, biases, multipliers, tables)."""
    symbol: str


@dataclass(frozen=True)
class ScratchArg:
    """The step's scratch buffer in the arena (Step.scratch_bytes long)."""
    ctype: str = "int32_t"


Arg = TensorArg | ConstArg | ScratchArg

# Parameters of every windowed kernel (conv, depthwise, pooling) that let the planner and
# the patch scheduler place its input and output freely:
# - in_row / out_row: pixels per row of the input and output buffers (the layer's own
#   widths unless the kernel reads from or writes into a wider tensor, as a patch does);
# - io_restrict: "restrict " (with its space), or "" when the planner overlaps the output with the input.
#   Overlap is safe because kernels produce output pixels in raster order and, with
#   out_block = B, finish reading the windows of pixels [kB, kB+B) before writing them;
#   see mcunet.memory.stream_overlap.
STREAM_DEFAULTS = {"io_restrict": "restrict ", "out_block": 1}


@dataclass
class Step:
    op: Op
    kernel: str | None  # template under templates/kernels/, None for a view (no code)
    params: dict[str, Any] = field(default_factory=dict)  # compile-time constants for the template
    args: list[Arg] = field(default_factory=list)
    scratch_bytes: int = 0
    view_of: int | None = None  # for views: the tensor whose bytes this op's output reuses
    macs: int = 0
    # Tensors a trace build reports after this step: the op's outputs, unless the step
    # computes only part of them (a patch), when only the step completing them reports.
    trace: list[int] | None = None

    @property
    def traced(self) -> list[int]:
        return list(self.op.outputs) if self.trace is None else self.trace

    @property
    def reads(self) -> list[int]:
        if self.view_of is not None:
            return [self.view_of]
        return [a.tid for a in self.args if isinstance(a, TensorArg) and a.const]

    @property
    def writes(self) -> list[int]:
        if self.view_of is not None:
            return list(self.op.outputs)
        return [a.tid for a in self.args if isinstance(a, TensorArg) and not a.const]


@dataclass
class ConstArray:
    symbol: str
    ctype: str
    values: np.ndarray  # flattened

    @property
    def nbytes(self) -> int:
        return int(self.values.size * self.values.dtype.itemsize)


class LowerContext:
    """Shared state while lowering one graph: the constant arrays that go to flash."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.consts: list[ConstArray] = []
        self._by_content: dict[tuple, str] = {}

    def t(self, tid: int) -> Tensor:
        return self.graph.t(tid)

    def const(self, hint: str, values: np.ndarray, ctype: str | None = None) -> ConstArg:
        """Store an array in flash; identical arrays are stored once."""
        values = np.ascontiguousarray(values).reshape(-1)
        ctype = ctype or C_TYPES[values.dtype.name]
        key = (ctype, values.dtype.str, values.tobytes())
        if key not in self._by_content:
            symbol = f"mcunet_{hint}_{len(self.consts)}"
            self._by_content[key] = symbol
            self.consts.append(ConstArray(symbol=symbol, ctype=ctype, values=values))
        return ConstArg(self._by_content[key])


Lowering = Callable[[Op, LowerContext], Step]
LOWERINGS: dict[str, Lowering] = {}


def lowers(*kinds: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for kind in kinds:
            LOWERINGS[kind] = fn
        return fn
    return register


def unsupported(op: Op, why: str) -> McunetError:
    """An error for a supported op kind used in a way mcunet cannot compile."""
    return McunetError(f"{op.kind} at index {op.index}: {why}")

"""Lowering: one Step per graph op. Each op module in codegen/ops registers a function
``lower(op, ctx) -> Step`` with ``@lowers("OP_NAME")``; the registered names are the
operators mcunet supports (`supported_ops`)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from mcunet.errors import McunetError
from mcunet.graph import C_TYPES, Graph, Op, Tensor
from mcunet.step import ConstArg, ConstArray, Step

Lowering = Callable[[Op, "LowerContext"], Step]
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


class LowerContext:
    """Shared state while lowering one graph: the constant arrays that go to flash."""

    def __init__(self, graph: Graph, arithmetic: str = "reference"):
        self.graph = graph
        # "reference" (TFLite's reference kernels) or "tflm" (TF Lite Micro's): the few ops
        # whose arithmetic differs read it (docs/arithmetic.md).
        self.arithmetic = arithmetic
        self.consts: list[ConstArray] = []
        self._by_content: dict[tuple, str] = {}

    def t(self, tid: int) -> Tensor:
        return self.graph.t(tid)

    def const(self, hint: str, values: np.ndarray, name: str, ctype: str | None = None) -> ConstArg:
        """Store an array in flash (identical arrays are stored once), passed to the kernel
        as its parameter `name`."""
        values = np.ascontiguousarray(values).reshape(-1)
        ctype = ctype or C_TYPES[values.dtype.name]
        key = (ctype, values.dtype.str, values.tobytes())
        if key not in self._by_content:
            symbol = f"mcunet_{hint}_{len(self.consts)}"
            self._by_content[key] = symbol
            self.consts.append(ConstArray(symbol=symbol, ctype=ctype, values=values))
        return ConstArg(self._by_content[key], name, ctype)


def supported_ops() -> tuple[str, ...]:
    """Every operator a lowering is registered for (mcunet.codegen imports all op modules)."""
    return tuple(sorted(LOWERINGS))


def unsupported_ops(graph: Graph) -> list[Op]:
    """The graph's ops that mcunet has no lowering for."""
    return [op for op in graph.ops if op.kind not in LOWERINGS]


def check_supported(graph: Graph) -> None:
    """Reject a graph with operators mcunet cannot compile, naming every one of them."""
    missing = unsupported_ops(graph)
    if missing:
        which = ", ".join(f"{op.kind} at index {op.index}" for op in missing)
        raise McunetError(f"unsupported operator{'s' if len(missing) > 1 else ''} {which}; "
                          f"mcunet supports {', '.join(supported_ops())}")


def lower_graph(graph: Graph, arithmetic: str = "reference"
                ) -> tuple[list[Step], list[ConstArray]]:
    """Every op's step, in graph order, and the flash contents, in the arithmetic of TFLite's
    reference kernels or of TF Lite Micro's (`arithmetic`: "reference" or "tflm")."""
    check_supported(graph)
    ctx = LowerContext(graph, arithmetic)
    steps = [LOWERINGS[op.kind](op, ctx) for op in graph.ops]
    return steps, ctx.consts

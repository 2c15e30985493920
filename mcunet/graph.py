"""The graph IR: small typed dataclasses that every stage of mcunet talks in.

A Graph is a list of tensors (activations and constants) and an ordered list of
ops. Tensor ids are indices into ``Graph.tensors``; passes may leave holes
(``None``) when they drop tensors, so always go through the helpers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "float32": 4, "bool": 1}
NP_TYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
            "int64": np.int64, "float32": np.float32, "float16": np.float16,
            "float64": np.float64, "bool": np.bool_}
C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
           "uint32": "uint32_t", "uint64": "uint64_t",
           "int64": "int64_t", "float32": "float", "float64": "double", "bool": "uint8_t"}


@dataclass
class QuantParams:
    """Affine quantisation: real = scale * (q - zero_point), per tensor or per axis."""

    scale: np.ndarray  # float32, shape (1,) or (channels,)
    zero_point: np.ndarray  # int64, same shape as scale
    axis: int = 0  # the quantised dimension when per-axis

    @property
    def per_axis(self) -> bool:
        return self.scale.size > 1

    @property
    def s(self) -> float:
        """The per-tensor scale as a Python float (exactly the stored float32)."""
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        return int(self.zero_point[0])


@dataclass
class Tensor:
    id: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: QuantParams | None = None
    data: np.ndarray | None = None  # set for constants

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]


@dataclass
class Op:
    index: int  # the operator's index in the source model, for messages
    kind: str  # TFLite builtin name, e.g. "CONV_2D"
    inputs: list[int]  # tensor ids, -1 for an omitted optional input
    outputs: list[int]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor | None]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    name: str = "model"

    def t(self, tid: int) -> Tensor:
        tensor = self.tensors[tid]
        assert tensor is not None, f"tensor {tid} was removed"
        return tensor

    def producers(self) -> dict[int, Op]:
        return {o: op for op in self.ops for o in op.outputs}

    def consumers(self) -> dict[int, list[Op]]:
        users: dict[int, list[Op]] = {}
        for op in self.ops:
            for i in op.inputs:
                if i >= 0:
                    users.setdefault(i, []).append(op)
        return users

    def activations(self) -> list[Tensor]:
        """Tensors that need RAM: everything used by an op or the graph that is not constant."""
        used = set(self.inputs) | set(self.outputs)
        for op in self.ops:
            used.update(i for i in op.inputs if i >= 0)
            used.update(op.outputs)
        return [self.t(i) for i in sorted(used) if not self.t(i).is_const]

    def constants(self) -> list[Tensor]:
        used = {i for op in self.ops for i in op.inputs if i >= 0}
        return [self.t(i) for i in sorted(used) if self.t(i).is_const]

"""`mcunet simulate --check`: compare the generated code with TFLite's reference (or, compiled
with --arithmetic tflm, with TF Lite Micro), byte for byte, and when they differ, find the first
layer whose output differs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compiler import CompiledModel
from .graph import NP_TYPES
from .frontend import read_tflite
from .reference import expected_outputs, reference_tensors, tflm_tensors
from .host import build_host
from .progress import plural


@dataclass
class LayerDiff:
    op_index: int
    op: str
    tensor: str
    differing: int
    total: int
    max_abs_diff: float


def compared_with(arithmetic: str) -> str:
    """What the generated code of an --arithmetic is bit-exact with, in words."""
    return "TF Lite Micro's kernels" if arithmetic == "tflm" else "TFLite's reference kernels"


@dataclass
class CheckResult:
    rows: int
    differing_rows: int
    differing_values: int
    total_values: int
    first_row: int | None = None
    first_layer: LayerDiff | None = None
    arithmetic: str = "reference"  # what was compared with: TFLite's reference or TFLM

    @property
    def against(self) -> str:
        return compared_with(self.arithmetic)

    @property
    def exact(self) -> bool:
        return self.differing_values == 0

    def summary(self) -> str:
        if self.exact:
            return (f"bit-exact: {plural(self.rows, 'row')}, "
                    f"{plural(self.total_values, 'output value')} identical to {self.against}")
        text = (f"MISMATCH: {self.differing_values:,} of {plural(self.total_values, 'output value')} "
                f"differ from {self.against} in {self.differing_rows} of "
                f"{plural(self.rows, 'row')} (first: row {self.first_row})")
        if self.first_layer:
            d = self.first_layer
            text += (f"\nfirst differing layer: op {d.op_index} {d.op} -> '{d.tensor}': "
                     f"{d.differing} of {d.total} values differ, max |diff| {d.max_abs_diff:g}")
        return text


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.reshape(-1).astype(np.float64) - b.reshape(-1).astype(np.float64)


def first_differing_layer(model_path: str | Path, compiled: CompiledModel,
                          row_inputs: list[np.ndarray]) -> LayerDiff | None:
    """Run one row with tracing on both sides and return the first op whose output differs."""
    ours = build_host(compiled, trace=True)
    _, records = ours.run(row_inputs, trace=True)
    g = compiled.graph
    if compiled.options.arithmetic == "tflm":
        count = len(read_tflite(model_path).tensors)  # TFLM's own tensors only
        ref = tflm_tensors(model_path, row_inputs,
                           sorted({t for s in compiled.steps for t in s.traced if t < count}))
    else:
        ref = reference_tensors(model_path, row_inputs)
    traced = iter(records)
    for step in compiled.steps:
        if step.kernel is None:
            continue
        for tid in step.traced:
            op_index, raw = next(traced)
            t = g.t(tid)
            mine = np.frombuffer(raw, dtype=NP_TYPES[t.dtype])
            if tid not in ref:
                continue
            d = _diff(mine, ref[tid])
            if np.any(d != 0):
                return LayerDiff(op_index=op_index, op=step.op.kind, tensor=t.name,
                                 differing=int(np.count_nonzero(d)), total=d.size,
                                 max_abs_diff=float(np.max(np.abs(d))))
    return None


def check_against_reference(model_path: str | Path, compiled: CompiledModel,
                            inputs: list[np.ndarray], outputs: list[np.ndarray]) -> CheckResult:
    expected = expected_outputs(model_path, inputs, compiled.options.arithmetic)
    rows = inputs[0].shape[0]
    per_row = np.zeros(rows, dtype=np.int64)
    total = 0
    for mine, ref in zip(outputs, expected):
        d = (mine.reshape(rows, -1).astype(np.float64) != ref.reshape(rows, -1).astype(np.float64))
        per_row += d.sum(axis=1)
        total += d.size
    result = CheckResult(rows=rows, differing_rows=int(np.count_nonzero(per_row)),
                         differing_values=int(per_row.sum()), total_values=total,
                         arithmetic=compiled.options.arithmetic)
    if not result.exact:
        r = int(np.flatnonzero(per_row)[0])
        result.first_row = r
        result.first_layer = first_differing_layer(model_path, compiled, [x[r:r + 1] for x in inputs])
    return result

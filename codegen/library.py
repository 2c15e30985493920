"""Render a lowered, planned model into a C99 library (a dict of file name -> text)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jinja2
import numpy as np

from mcunet import templates as _templates_pkg
from mcunet import __version__
from mcunet.graph import C_TYPES, Graph
from mcunet.memory import ArenaPlan

from mcunet.overlaps import step_overlaps
from mcunet.step import ConstArray, Elementwise, InPlace, Step, TensorArg

TEMPLATE_DIR = Path(_templates_pkg.__file__).parent
NAME = "@KERNEL@"  # placeholder for a kernel's function name while it is rendered


def c_values(values: np.ndarray, per_line: int = 20) -> str:
    """An array's values as a C initialiser list, `per_line` to a line."""
    if values.dtype == np.float64:  # hexadecimal literals are exact
        items = [float(v).hex() for v in values.tolist()]
    elif values.dtype in (np.uint32, np.uint64):
        items = [f"{v}u" for v in values.tolist()]
    elif values.dtype.kind == "f":
        items = [repr(float(v)) + "f" for v in values.tolist()]
    else:
        items = ["(-2147483647 - 1)" if v == -(1 << 31) else str(v) for v in values.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n".join("    " + line for line in lines)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["c_values"] = c_values
    env.filters["c_signature"] = c_signature
    return env


@dataclass
class Library:
    files: dict[str, str]  # path relative to the output folder -> text
    kernels: dict[str, str] = field(default_factory=dict)  # function name -> kernel name

    def write(self, out: str | Path) -> list[Path]:
        """Write every file under the folder `out`; returns their paths."""
        paths = []
        for rel, text in sorted(self.files.items()):
            path = Path(out) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            paths.append(path)
        return paths


SIGNATURE_WIDTH = 80  # kernel signatures wrap before this column (with the placeholder name)


def c_signature(name: str, params: list[str]) -> str:
    """`void name(params)` with the parameters wrapped under the first one."""
    lines, line = [], f"void {name}("
    indent = " " * len(line)
    for k, param in enumerate(params):
        piece = param + (", " if k + 1 < len(params) else ")")
        if len(line) + len(piece.rstrip()) > SIGNATURE_WIDTH and line.strip() != f"void {name}(":
            lines.append(line.rstrip())
            line = indent
        line += piece
    return "\n".join(lines + [line])


@dataclass(frozen=True)
class KernelParam:
    """One parameter of a kernel as the call passes it: its C declaration and the argument."""
    decl: str  # e.g. "const int8_t *restrict input"
    value: str  # e.g. "ARENA(const int8_t, 1024)"
    written: bool = False  # the kernel writes through it
    restrict: bool = True


def _spans(plan: ArenaPlan, step: Step, index: int):
    """(start, end, written) of every pointer the step passes into the arena, None for flash."""
    spans = []
    for arg in step.args:
        if isinstance(arg, TensorArg):
            start, end = plan.tensor_span(arg.tid)
            spans.append((start, end, arg.output))
        else:
            spans.append(None)
    if step.kernel.scratch is not None:
        spans.append((*plan.scratch_span(index), True))
    return spans


def kernel_params(graph: Graph, plan: ArenaPlan, step: Step, index: int) -> list[KernelParam]:
    """The step's parameters in call order (its arguments, then the kernel's scratch).

    A pointer is `restrict` unless the planner placed it over bytes that another of the
    step's pointers also reaches while one of the two is written, or the kernel is written
    to work over its own input (an in-place or elementwise overlap rule: those pointers are
    never restrict, so one kernel serves a layer wherever the plan puts it)."""
    spans = _spans(plan, step, index)
    by_rule = set()
    if isinstance(step.kernel.overlap, (InPlace, Elementwise)):
        by_rule = {t for ov in step_overlaps(graph, step, index) for t in (ov.src, ov.dst)}
    tids = [a.tid if isinstance(a, TensorArg) else None for a in step.args] + [None]

    def restrict(k: int) -> bool:
        mine = spans[k]
        if tids[k] in by_rule:
            return False
        return mine is None or not any(
            j != k and other is not None and (mine[2] or other[2])
            and mine[0] < other[1] and other[0] < mine[1] for j, other in enumerate(spans))

    def param(k: int, ctype: str, name: str, value: str, written: bool) -> KernelParam:
        qualifier = "restrict " if restrict(k) else ""
        return KernelParam(f"{'' if written else 'const '}{ctype} *{qualifier}{name}", value,
                           written, restrict(k))

    params = []
    for k, arg in enumerate(step.args):
        if isinstance(arg, TensorArg):
            t = graph.t(arg.tid)
            ctype = C_TYPES[t.dtype]
            at = plan.tensor_offset(arg.tid) + arg.offset * t.nbytes // max(t.size, 1)
            pointer = ("" if arg.output else "const ") + ctype
            params.append(param(k, ctype, arg.name, f"ARENA({pointer}, {at})", arg.output))
        else:
            params.append(param(k, arg.ctype, arg.name, arg.symbol, False))
    scratch = step.kernel.scratch
    if scratch is not None:
        params.append(param(len(step.args), scratch.ctype, scratch.name,
                            f"ARENA({scratch.ctype}, {plan.scratch_offset(index)})", True))
    return params


def _io(graph: Graph, plan: ArenaPlan, tids: list[int], kind: str) -> list[dict]:
    result = []
    for index, tid in enumerate(tids):
        t = graph.t(tid)
        result.append({"kind": kind, "index": index, "name": t.name, "shape": list(t.shape),
                       "dtype": t.dtype, "ctype": C_TYPES[t.dtype], "elements": t.size,
                       "bytes": t.nbytes, "offset": plan.tensor_offset(tid),
                       "scale": repr(t.quant.s) if t.quant is not None else None,
                       "zero_point": t.quant.zp if t.quant is not None else None})
    return result


def render_library(graph: Graph, steps: Sequence[Step], consts: Sequence[ConstArray],
                   plan: ArenaPlan) -> Library:
    env = environment()
    files: dict[str, str] = {}
    kernels: dict[str, str] = {}  # function name -> kernel name
    by_body: dict[str, str] = {}  # rendered body (with NAME) -> function name
    declarations: list[str] = []
    calls = []
    for i, step in enumerate(steps):
        op = step.op
        out_names = ", ".join(f"'{graph.t(o).name}'" for o in op.outputs)
        call = {"op_index": op.index, "function": None, "args": [], "traced": [],
                "comment": f"{op.index}: {op.kind} -> {out_names}"}
        if step.kernel is None:
            call["comment"] += " (view of its input: no code)"
            calls.append(call)
            continue
        params = kernel_params(graph, plan, step, i)
        decls = [p.decl for p in params]
        # The output shares bytes with an input (kernels may take another path then).
        aliased = any(p.written and not p.restrict for p in params)
        body = env.get_template(f"kernels/{step.kernel.template}").render(
            name=NAME, params=decls, aliased=aliased, **step.layer.template_vars(),
            **step.kernel.constants(step.layer))
        if body not in by_body:
            stem = step.kernel.name
            name = f"mcunet_{stem}_{sum(1 for k in kernels.values() if k == stem)}"
            by_body[body] = name
            kernels[name] = stem
            files[f"kernels/{name}.c"] = body.replace(NAME, name)
            declarations.append(f"void {name}({', '.join(decls)})")
        call["function"] = by_body[body]
        call["args"] = [p.value for p in params]
        call["traced"] = [{"offset": plan.tensor_offset(o), "bytes": graph.t(o).nbytes}
                          for o in step.traced]
        calls.append(call)
    flash = sum(c.nbytes for c in consts)
    common = {"model_name": graph.name, "version": __version__, "arena_bytes": plan.arena_bytes,
              "flash_bytes": flash, "macs": sum(s.macs for s in steps),
              "inputs": _io(graph, plan, graph.inputs, "input"),
              "outputs": _io(graph, plan, graph.outputs, "output")}
    files["mcunet_model.h"] = env.get_template("mcunet_model.h.j2").render(**common)
    files["mcunet_model.c"] = env.get_template("mcunet_model.c.j2").render(calls=calls, **common)
    files["mcunet_kernels.h"] = env.get_template("mcunet_kernels.h.j2").render(
        declarations=declarations, **common)
    files["mcunet_weights.h"] = env.get_template("mcunet_weights.h.j2").render(consts=consts, **common)
    files["mcunet_weights.c"] = env.get_template("mcunet_weights.c.j2").render(consts=consts, **common)
    files["mcunet_common.h"] = env.get_template("mcunet_common.h.j2").render(**common)
    return Library(files=files, kernels=kernels)

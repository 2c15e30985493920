"""Render a lowered, planned model into a C99 library (a dict of file name -> text)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from mcunet import templates as _templates_pkg
from mcunet import __version__
from mcunet.graph import C_TYPES, Graph
from mcunet.memory import ArenaPlan

from .step import ConstArg, ConstArray, ScratchArg, Step, TensorArg

TEMPLATE_DIR = Path(_templates_pkg.__file__).parent
NAME = "@KERNEL@"  # placeholder for a kernel's function name while it is rendered


def c_values(values: np.ndarray, per_line: int = 20) -> str:
    """An array's values as a C initialiser list, `per_line` to a line."""
    if values.dtype == np.float64:  # hexadecimal literals are exact
        items = [float(v).hex() for v in values.tolist()]
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
    return env


@dataclass
class Library:
    files: dict[str, str]  # path relative to the output folder -> text
    kernels: dict[str, str] = field(default_factory=dict)  # function name -> template

    def write(self, out: Path) -> list[Path]:
        paths = []
        for rel, text in sorted(self.files.items()):
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            paths.append(path)
        return paths


def _declaration(source: str, name: str) -> str:
    """The prototype of function `name` as written in its rendered definition."""
    match = re.search(r"^void " + re.escape(name) + r"\(.*?\)(?=\s*\{)", source, re.S | re.M)
    assert match, f"kernel {name} has no definition"
    return re.sub(r"\s+", " ", match.group(0))


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


def render_library(graph: Graph, steps: list[Step], consts: list[ConstArray],
                   plan: ArenaPlan) -> Library:
    env = environment()
    files: dict[str, str] = {}
    kernels: dict[str, str] = {}  # function name -> template
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
        body = env.get_template(f"kernels/{step.kernel}").render(name=NAME, **step.params)
        if body not in by_body:
            stem = step.kernel.split(".")[0]
            name = f"mcunet_{stem}_{sum(1 for k in kernels.values() if k == step.kernel)}"
            by_body[body] = name
            kernels[name] = step.kernel
            source = body.replace(NAME, name)
            files[f"kernels/{name}.c"] = source
            declarations.append(_declaration(source, name))
        call["function"] = by_body[body]
        for arg in step.args:
            if isinstance(arg, TensorArg):
                t = graph.t(arg.tid)
                ctype = ("const " if arg.const else "") + C_TYPES[t.dtype]
                at = plan.tensor_offset(arg.tid) + arg.offset * t.nbytes // max(t.size, 1)
                call["args"].append(f"ARENA({ctype}, {at})")
            elif isinstance(arg, ConstArg):
                call["args"].append(arg.symbol)
            elif isinstance(arg, ScratchArg):
                call["args"].append(f"ARENA({arg.ctype}, {plan.scratch_offset(i)})")
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

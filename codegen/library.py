"""Render a lowered, planned model into a C99 library (a dict of file name -> text).

The templates and the step IR spell every external name of the library with the prefix
`mcunet_` (functions, weights, files) or `MCUNET_` (macros); rendering maps that prefix to
the library's name (LibraryOptions.name), so that two libraries of different names link into
one program. The default name, mcunet, maps every name to itself."""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jinja2
import numpy as np

from mcunet import templates as _templates_pkg
from mcunet import __version__
from mcunet.errors import McunetError
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


DEFAULT_NAME = "mcunet"
# Whose integer arithmetic the generated code follows, bit for bit: TFLite's reference kernels
# (ai-edge-litert BUILTIN_REF, the default) or TF Lite Micro's (docs/arithmetic.md).
ARITHMETICS = ("reference", "tflm")
DEFAULT_ARITHMETIC = "reference"
_PREFIXES = re.compile(r"\b(?:mcunet_|MCUNET_)")
# A letter first: a leading underscore would make the macros (_NAME_...) reserved identifiers.
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SECTION = re.compile(r"[A-Za-z0-9_.$]+")
_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern
    float for goto if inline int long register restrict return short signed sizeof static struct
    switch typedef union unsigned void volatile while _Bool _Complex _Imaginary""".split())


@dataclass(frozen=True)
class LibraryOptions:
    """How the generated library meets the firmware around it.

    name: the prefix of every external symbol (name_invoke, name_input, the kernels and the
    weights), of every macro (NAME_ARENA_BYTES: the name in capitals) and of the files
    (name_model.h); arena_section: a linker section for the static arena; external_arena: no
    static arena, the firmware hands one over with name_set_arena(buffer, bytes)."""
    name: str = DEFAULT_NAME
    arena_section: str | None = None
    external_arena: bool = False
    # The library's version in its build files (library.json, library.properties, CMake);
    # the build metadata after '+' is a digest of the generated code, so it names the model.
    version: str = "1.0.0"
    arithmetic: str = DEFAULT_ARITHMETIC

    def __post_init__(self):
        if self.arithmetic not in ARITHMETICS:
            raise McunetError(f"--arithmetic {self.arithmetic!r} is not one of "
                              f"{', '.join(ARITHMETICS)}")
        if not _IDENTIFIER.fullmatch(self.name) or self.name in C_KEYWORDS:
            raise McunetError(f"--name {self.name!r} is not a C identifier: use letters, digits "
                              "and underscores, starting with a letter (e.g. kws)")
        if self.arena_section is not None and not _SECTION.fullmatch(self.arena_section):
            raise McunetError(f"--arena-section {self.arena_section!r} is not a section name "
                              "(letters, digits, '_', '.' and '$', e.g. .bss.sram2)")
        if not _VERSION.fullmatch(self.version):
            raise McunetError(f"--lib-version {self.version!r} is not MAJOR.MINOR.PATCH "
                              "(e.g. 1.2.0)")
        if self.arena_section is not None and self.external_arena:
            raise McunetError("--arena-section and --external-arena exclude each other: with an "
                              "external arena, the firmware places its own buffer")

    @property
    def macro(self) -> str:
        """The macros' prefix: the name in capitals."""
        return self.name.upper()

    @property
    def target(self) -> str:
        """The library's name in build systems: the CMake target, the PlatformIO and Arduino
        library (name_model, beside the header name_model.h)."""
        return f"{self.name}_model"

    def c(self, identifier: str) -> str:
        """An identifier (or file name) of the templates' namespace, mcunet_x or MCUNET_X, in
        this library's: name_x or NAME_X."""
        return rename(identifier, self.name)


def rename(text: str, name: str) -> str:
    """Every mcunet_/MCUNET_ that starts a word, with the library's name instead."""
    if name == DEFAULT_NAME:
        return text
    return _PREFIXES.sub(lambda m: f"{name}_" if m.group(0)[0] == "m" else f"{name.upper()}_",
                         text)


class _RenamingLoader(jinja2.FileSystemLoader):
    """Loads the templates with the library's name in place of the mcunet_ prefix, so that the
    templates read as the C they render (for the default name, exactly that C)."""

    def __init__(self, name: str):
        super().__init__(str(TEMPLATE_DIR))
        self.name = name

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        return rename(source, self.name), filename, uptodate


def _configure(env: jinja2.Environment) -> jinja2.Environment:
    env.filters["c_values"] = c_values
    env.filters["c_signature"] = c_signature
    return env


def environment() -> jinja2.Environment:
    """The templates as written (the harnesses and build files, which take the library's name
    as a variable)."""
    return _configure(jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                                         undefined=jinja2.StrictUndefined,
                                         keep_trailing_newline=True))


@functools.lru_cache(maxsize=8)
def library_environment(name: str = DEFAULT_NAME) -> jinja2.Environment:
    """The templates of the library itself, in the namespace of the library's name."""
    env = _configure(jinja2.Environment(loader=_RenamingLoader(name),
                                        undefined=jinja2.StrictUndefined,
                                        keep_trailing_newline=True))
    env.filters["lib"] = lambda identifier: rename(identifier, name)  # a symbol passed in
    return env


@dataclass
class Library:
    files: dict[str, str]  # path relative to the output folder -> text
    kernels: dict[str, str] = field(default_factory=dict)  # function name -> kernel name
    options: LibraryOptions = LibraryOptions()
    arena_bytes: int = 0

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def header(self) -> str:
        """The public header's file name (name_model.h)."""
        return self.options.c("mcunet_model.h")

    @property
    def sources(self) -> list[str]:
        return sorted(rel for rel in self.files if rel.endswith(".c"))

    def arduino(self, model_name: str) -> dict[str, str]:
        """The library as an Arduino library (1.5 format): library.properties, the sources
        under src/ and an example sketch."""
        o = self.options
        env = library_environment(o.name)
        common = _build_vars(self, model_name)
        files = {f"src/{rel}": text for rel, text in self.files.items()
                 if rel not in BUILD_FILES}
        files["library.properties"] = env.get_template("packaging/library.properties.j2").render(
            **common)
        files[f"examples/{o.target}/{o.target}.ino"] = env.get_template(
            "packaging/example.ino.j2").render(**common)
        return files

    def write(self, out: str | Path) -> list[Path]:
        """Write every file under the folder `out`; returns their paths."""
        paths = []
        for rel, text in sorted(self.files.items()):
            path = Path(out) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            paths.append(path)
        return paths


# The build files in the library's folder, beside the sources (CMake, PlatformIO).
BUILD_FILES = ("CMakeLists.txt", "library.json")


def _build_vars(library: Library, model_name: str) -> dict:
    o = library.options
    code = hashlib.sha256()
    for rel in sorted(library.files):
        if rel not in BUILD_FILES:
            code.update(rel.encode() + b"\0" + library.files[rel].encode() + b"\0")
    return {"model_name": model_name, "tool_version": __version__, "target": o.target,
            "header": library.header, "sources": library.sources,
            "numeric_version": o.version, "version": f"{o.version}+{code.hexdigest()[:8]}",
            "external_arena": o.external_arena,
            "arena_bytes": library.arena_bytes}



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


def kernel_params(graph: Graph, plan: ArenaPlan, step: Step, index: int,
                  options: LibraryOptions = LibraryOptions()) -> list[KernelParam]:
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
            params.append(param(k, arg.ctype, arg.name, options.c(arg.symbol), False))
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
                   plan: ArenaPlan, options: LibraryOptions = LibraryOptions(),
                   training=None) -> Library:
    """training: a --train build's mcunet.training.Training (its template_vars render the
    training step into mcunet_model.c and its API into mcunet_model.h), or None."""
    env = library_environment(options.name)
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
        params = kernel_params(graph, plan, step, i, options)
        decls = [p.decl for p in params]
        # The output shares bytes with an input (kernels may take another path then).
        aliased = any(p.written and not p.restrict for p in params)
        body = env.get_template(f"kernels/{step.kernel.template}").render(
            name=NAME, params=decls, aliased=aliased, **step.layer.template_vars(),
            **step.kernel.constants(step.layer))
        if body not in by_body:
            stem = step.kernel.name
            name = options.c(f"mcunet_{stem}_{sum(1 for k in kernels.values() if k == stem)}")
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
              "outputs": _io(graph, plan, graph.outputs, "output"),
              "arena_section": options.arena_section, "external_arena": options.external_arena,
              "training": training.template_vars(graph, plan) if training is not None else None}
    named = [ConstArray(options.c(c.symbol), c.ctype, c.values) for c in consts]
    for stem, extra in (("model.h", {}), ("model.c", {"calls": calls}),
                        ("kernels.h", {"declarations": declarations}),
                        ("weights.h", {"consts": named}), ("weights.c", {"consts": named}),
                        ("common.h", {})):
        files[options.c(f"mcunet_{stem}")] = env.get_template(f"mcunet_{stem}.j2").render(
            **extra, **common)
    library = Library(files=files, kernels=kernels, options=options,
                      arena_bytes=plan.arena_bytes)
    build = dict(_build_vars(library, graph.name), training=training is not None)
    files["CMakeLists.txt"] = env.get_template("packaging/CMakeLists.txt.j2").render(**build)
    files["library.json"] = env.get_template("packaging/library.json.j2").render(**build)
    return library

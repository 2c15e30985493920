"""The package's layers, read from the source's import statements: each module imports only
its own layer and the ones below it, and nothing under mcunet/ hides a dependency on the
code generator, the boards or the search in an import inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

# Folder in the repository -> the package it installs as.
PACKAGES = {"mcunet": "mcunet", "codegen": "mcunet.codegen", "search": "mcunet.search",
            "boards": "mcunet.boards", "templates": "mcunet.templates"}

CORE = 0
CODEGEN = 1
DRIVER = 2
SUBSYSTEM = 3  # boards, search: peers on top of the driver
INTERFACE = 4  # the CLI and the Python API

LAYER_NAMES = {CORE: "core", CODEGEN: "codegen", DRIVER: "driver", SUBSYSTEM: "boards/search",
               INTERFACE: "interface"}

CORE_MODULES = {"errors", "graph", "layers", "step", "frontend", "opschema", "validate",
                "passes", "memory", "overlaps", "schedule", "patch", "stream", "tiling", "quant",
                "shapes", "analysis"}
DRIVER_MODULES = {"compiler", "tune", "selection", "work", "target", "budget", "host", "check",
                  "reference", "report", "plot", "outdir", "footprint", "progress", "costmodel",
                  "costmodel_table", "training"}
INTERFACE_MODULES = {"cli", "api", "__main__", "options", "evaluate", "trainplan", "mcunet.boards.cli",
                     "mcunet.search.cli"}


def layer_of(module: str) -> int:
    if module in ("mcunet.boards.cli", "mcunet.search.cli"):
        return INTERFACE
    if module == "mcunet" or module == "mcunet.templates":
        return CORE
    if module.startswith("mcunet.codegen"):
        return CODEGEN
    if module.startswith(("mcunet.boards", "mcunet.search")):
        return SUBSYSTEM
    name = module.split(".", 1)[1]
    if name in CORE_MODULES:
        return CORE
    if name in DRIVER_MODULES:
        return DRIVER
    if name in INTERFACE_MODULES:
        return INTERFACE
    raise AssertionError(f"{module} has no layer: add it to tests/test_layering.py")


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if "platform" in parts:  # PlatformIO's build script, run by SCons
                continue
            found[".".join([package, *parts])] = path
    return found


def imports(module: str, source: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """(imported mcunet module, line, inside a function) for every import statement."""
    tree = ast.parse(source)
    base = module.split(".") if is_package else module.split(".")[:-1]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names
                             if a.name.split(".")[0] == "mcunet")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    target = ".".join(base[:len(base) - child.level + 1] + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] == "mcunet":
                    for a in child.names:  # `from mcunet import api` imports mcunet.api
                        sub = f"{target}.{a.name}"
                        found.append((sub if sub in ALL else target, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


ALL = modules()


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    problems = []
    mine = layer_of(module)
    for target, line, in_function in imports(module, source, is_package):
        while target not in ALL and "." in target:
            target = target.rsplit(".", 1)[0]
        theirs = layer_of(target)
        if module == "mcunet" and target in ("mcunet.api", "mcunet.compiler", "mcunet.errors"):
            continue  # the package's lazy export of its public API (mcunet/__init__.py)
        if theirs > mine and not (mine == SUBSYSTEM and theirs == SUBSYSTEM):
            problems.append(f"{module}:{line} ({LAYER_NAMES[mine]}) imports {target} "
                            f"({LAYER_NAMES[theirs]})")
        if in_function and ALL[module].parent == ROOT / "mcunet" \
                and target.startswith(("mcunet.codegen", "mcunet.boards", "mcunet.search")):
            problems.append(f"{module}:{line} imports {target} inside a function")
    return problems


def test_every_module_imports_only_its_layer_and_below():
    problems = []
    for module, path in ALL.items():
        problems += violations(module, path.read_text(), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_planner_that_imports_codegen():
    source = (ROOT / "mcunet" / "memory.py").read_text()
    bad = source + "\n\ndef _sneaky():\n    from .codegen import kernels\n"
    problems = violations("mcunet.memory", bad)
    assert any("imports mcunet.codegen.kernels (codegen)" in p for p in problems), problems
    assert any("inside a function" in p for p in problems), problems
    assert violations("mcunet.memory", source) == []


def test_codegen_imports_only_the_core():
    for module, path in ALL.items():
        if module.startswith("mcunet.codegen"):
            for target, line, _ in imports(module, path.read_text(), path.name == "__init__.py"):
                assert target.startswith("mcunet.codegen") or layer_of(target) == CORE, \
                    f"{module}:{line} imports {target}"

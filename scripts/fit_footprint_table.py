#!/usr/bin/env python3
"""Measure the generated library's stack and code bytes with Arm GCC over the fitting corpus
(scripts/corpus.py) for every Cortex-M core, and its code bytes with the host's C compiler,
and write boards/footprint_table.py: the figures mcunet uses on a machine without Arm GCC
(mcunet.boards.stack.table_footprint), and the code estimate of the architecture search, which
plans hundreds of candidates and cannot compile each (mcunet.boards.stack.table_code_bytes).

Per core and kernel: the deepest stack below the kernel seen in the corpus (its frame plus
its callees, toolchain helpers included), and a least-squares line of the kernel's code bytes
in the length of its rendered C source; for the driver (NAME_model.c): its own frame, and its
code bytes as a line in the number of kernel calls. Then prints the table's error on the
MLPerf Tiny models against Arm GCC itself.

    python scripts/fit_footprint_table.py [--networks 24] [--stacks 24] [--cores host,...]

--cores refits only those (the others keep the table's rows).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

CORES = ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33"]
HOST = "host"  # the host's C compiler: code bytes only (its stack is not bounded)
MLPERF = ROOT.parent / "shared" / "models" / "mlperf-tiny"


def measure(files: dict[str, str], core) -> tuple[dict, list]:
    """(driver row, kernel rows) of one library: frames, code bytes, source lengths."""
    from mcunet.boards import stack
    from mcunet.boards.toolchain import arm_tool
    from mcunet.footprint import flash_bytes_of_object

    name = stack.library_name(files)
    frames: dict[str, int] = {}
    edges: dict[str, set] = {}
    tmp, objects = stack.compile_objects_for(arm_tool("gcc"), core, files)
    try:
        for obj in objects.values():
            stack._parse_callgraph(obj.with_suffix(".ci").read_text(), frames, edges)
        sizes = {rel: flash_bytes_of_object(obj) for rel, obj in objects.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    external = {c for cs in edges.values() for c in cs if c not in frames}
    if external:
        lib_frames, lib_edges, _ = stack._external_frames(external, core)
        for fn, size in lib_frames.items():
            frames.setdefault(fn, size)
        for fn, calls in lib_edges.items():
            edges.setdefault(fn, set()).update(calls)
    model = files[f"{name}_model.c"]
    driver = {"frame": frames[f"{name}_invoke"],
              "calls": len(re.findall(rf"^    {name}_\w+\(", model, re.M)),
              "code": sizes[f"{name}_model.c"]}
    ours = set(frames) - set(external)
    kernels = []
    for rel, text in files.items():
        if rel.startswith("kernels/") and rel.endswith(".c"):
            fn = Path(rel).stem
            kernels.append({"stem": stack.kernel_stem(fn, name), "length": len(text),
                            "code": sizes[rel], "stack": stack._deepest(fn, frames, edges),
                            "helpers": sorted(c for c in edges.get(fn, ()) if c not in ours
                                              and c.startswith("__"))})
    return driver, kernels


def measure_host(files: dict[str, str]) -> tuple[dict, list]:
    """measure() with the host's C compiler: code bytes only (no call graph, no helpers)."""
    from mcunet.boards import stack
    from mcunet.footprint import (LIBRARY_CFLAGS, compile_objects, find_cc,
                                  flash_bytes_of_object)

    name = stack.library_name(files)
    tmp, objects = compile_objects([find_cc()], files, LIBRARY_CFLAGS, "the host C compiler")
    try:
        sizes = {rel: flash_bytes_of_object(obj) for rel, obj in objects.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    model = files[f"{name}_model.c"]
    driver = {"frame": 0, "calls": len(re.findall(rf"^    {name}_\w+\(", model, re.M)),
              "code": sizes[f"{name}_model.c"]}
    kernels = [{"stem": stack.kernel_stem(Path(rel).stem, name), "length": len(text),
                "code": sizes[rel], "stack": 0, "helpers": []}
               for rel, text in files.items() if rel.startswith("kernels/") and rel.endswith(".c")]
    return driver, kernels


def core_blocks(text: str) -> dict[str, str]:
    """core -> its rows in the table as last written, verbatim (with their comments): what
    the cores not refitted keep."""
    blocks, cpu, rows = {}, None, []
    for row in text.splitlines():
        start = re.match(r"    '([\w-]+)': \{$", row)
        if start:
            cpu, rows = start.group(1), []
        if cpu is not None:
            rows.append(row)
            if row == "    },":
                blocks[cpu], cpu = "\n".join(rows), None
    return blocks


def line(xs, ys) -> tuple[float, float]:
    """Least squares y = a + b x (b >= 0; one point: through it with b = 0). Where the fit's
    a is negative, y = b x through the origin instead: lengths seen over a narrow range give
    a steep line that a slightly longer source would extrapolate far off (the host's MEAN:
    -89,681 + 106.8 x), where the code is near a fixed share of the source's length."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(set(xs.tolist())) < 2:
        return float(ys.mean()), 0.0
    b, a = np.polyfit(xs, ys, 1)
    if b < 0:
        return float(ys.mean()), 0.0
    if a < 0:
        return 0.0, float((xs @ ys) / (xs @ xs))
    return float(a), float(b)


def main() -> int:
    from corpus import corpus

    from mcunet.boards import stack as stack_module
    from mcunet.boards.stack import table_footprint
    from mcunet.boards.toolchain import CORE_FPU, ArmCore
    from mcunet.compiler import compile_graph, compile_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=24)
    ap.add_argument("--stacks", type=int, default=24)
    ap.add_argument("--no-patches", action="store_true",
                    help="plan layer by layer only (faster; fewer kernel shapes)")
    ap.add_argument("--cores", default=",".join(CORES + [HOST]),
                    help="refit these (comma-separated); the others keep their rows")
    args = ap.parse_args()
    patches = ("none",) if args.no_patches else ("none", "auto")
    items = corpus(networks=args.networks, stacks=args.stacks)
    from mcunet.boards.footprint_table import TABLE as OLD

    table = dict(OLD)
    for cpu in args.cores.split(","):
        core = ArmCore(cpu, CORE_FPU[cpu]) if cpu != HOST else None
        drivers, kernels = [], []
        for name, graph in items:
            for patch in patches:
                try:
                    m = compile_graph(graph, patch=patch, target=cpu)
                except Exception as exc:
                    print(f"  {name}: {exc}", file=sys.stderr)
                    continue
                files = m.library().files
                d, ks = measure(files, core) if core is not None else measure_host(files)
                drivers.append(d)
                kernels += ks
        print(f"{cpu}: {len(drivers)} libraries, {len(kernels)} kernels", flush=True)
        rows = {}
        for stem in sorted({k["stem"] for k in kernels}):
            mine = [k for k in kernels if k["stem"] == stem]
            rows[stem] = {"stack": max(k["stack"] for k in mine),
                          "code": line([k["length"] for k in mine], [k["code"] for k in mine]),
                          "seen": len(mine)}
            rows[stem]["helpers"] = sorted({h for k in mine for h in k["helpers"]})
        rows["*"] = {"stack": max(k["stack"] for k in kernels),
                     "code": line([k["length"] for k in kernels], [k["code"] for k in kernels]),
                     "seen": len(kernels), "helpers": []}
        names = {h for k in kernels for h in k["helpers"]}
        table[cpu] = {"driver": {"stack": max(d["frame"] for d in drivers),
                                 "code": line([d["calls"] for d in drivers],
                                              [d["code"] for d in drivers])},
                      "kernels": rows,
                      "helpers": stack_module.helper_table(names, core) if names else {}}
    table = {cpu: table[cpu] for cpu in CORES + [HOST] if cpu in table}
    out = ROOT / "boards" / "footprint_table.py"
    kept = core_blocks(out.read_text())
    refitted = args.cores.split(",")
    lines = ['"""Stack and code bytes of the generated library per Cortex-M core, measured with',
             "arm-none-eabi-gcc -O2 over scripts/corpus.py's networks by",
             "scripts/fit_footprint_table.py (which wrote this file): used where no Arm GCC is",
             "installed (mcunet.boards.stack.table_footprint) and for the architecture search's",
             "code estimate (mcunet.boards.stack.table_code_bytes; 'host': the host's C compiler,",
             "code only). Per kernel: the deepest stack seen below it, code bytes = a + b *",
             "(length of its rendered C) and the libgcc helpers it calls; the driver: its frame,",
             "and code bytes = a + b * (kernel calls); per helper: the libgcc member defining it",
             'and that member\'s bytes."""', "", "TABLE = {"]
    for cpu, t in table.items():
        if cpu not in refitted:
            lines.append(kept[cpu])
            continue
        d = t["driver"]
        lines.append(f"    {cpu!r}: {{")
        lines.append(f"        'driver': {{'stack': {d['stack']}, 'code': ({d['code'][0]:.1f}, "
                     f"{d['code'][1]:.3f})}},")
        lines.append("        'kernels': {")
        for stem, r in t["kernels"].items():
            lines.append(f"            {stem!r}: {{'stack': {r['stack']}, 'code': "
                         f"({r['code'][0]:.1f}, {r['code'][1]:.4f}), "
                         f"'helpers': {tuple(r['helpers'])!r}}},  # {r['seen']} seen")
        lines.append("        },")
        lines.append("        'helpers': {")
        for symbol, (member, size) in sorted(t["helpers"].items()):
            lines.append(f"            {symbol!r}: ({member!r}, {size}),")
        lines.append("        },")
        lines.append("    },")
    lines.append("}")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    # How far the table is from Arm GCC on models it was not fitted on.
    import importlib

    import mcunet.boards.footprint_table as ft
    importlib.reload(ft)
    from mcunet.boards.stack import arm_footprint

    print(f"\n{'model':<24} {'core':<14} {'gcc stack':>9} {'table':>6} {'gcc code':>9} "
          f"{'table':>7} {'ratio':>6}")
    for path in sorted(MLPERF.glob("*.tflite")):
        for cpu in ("cortex-m4", "cortex-m3", HOST):
            files = compile_model(path, target=cpu).library().files
            if cpu == HOST:
                from mcunet.boards.stack import table_code_bytes
                from mcunet.footprint import host_footprint

                gcc, tab = host_footprint(files), table_code_bytes(files, HOST)
                print(f"{path.stem:<24} {cpu:<14} {'-':>9} {'-':>6} {gcc.code_bytes:>9,} "
                      f"{tab:>7,} {tab / gcc.code_bytes:>6.3f}")
                continue
            core = ArmCore(cpu, CORE_FPU[cpu])
            gcc, tab = arm_footprint(files, core), table_footprint(files, core)
            print(f"{path.stem:<24} {cpu:<14} {gcc.stack_bytes:>9,} {tab.stack_bytes:>6,} "
                  f"{gcc.code_bytes:>9,} {tab.code_bytes:>7,} "
                  f"{tab.code_bytes / gcc.code_bytes:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The deepest stack the generated library needs on a core: mcunet_invoke plus the deepest
chain of calls below it, from gcc's call graph with stack usage (-fcallgraph-info=su, which
is -fstack-usage per function plus the edges between them).

Calls that leave the library (libgcc's soft-float helpers on cores without a double FPU,
newlib's memcpy) get their frames from the Arm toolchain's own libraries: a probe image
linking exactly those functions is disassembled and each function's pushes and stack
adjustments are added up, following its calls."""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mcunet.errors import McunetError

from .toolchain import arm_tool, cache_root, run_tool

# The library is compiled like this everywhere (firmware builds use the same flags).
LIBRARY_CFLAGS = ["-std=c99", "-O2", "-ffunction-sections", "-fdata-sections"]
ENTRY = "mcunet_invoke"


def core_flags(board) -> list[str]:
    flags = [f"-mcpu={board.core}", "-mthumb"]
    return flags + ([f"-mfpu={board.fpu}", "-mfloat-abi=hard"] if board.fpu
                    else ["-mfloat-abi=soft"])


def _parse_callgraph(text: str, frames: dict[str, int], edges: dict[str, set]) -> None:
    for m in re.finditer(r'node: \{ title: "([^"]+)" label: "([^"]*)"', text):
        size = re.search(r"\\n(\d+) bytes \((static|dynamic|bounded)", m.group(2))
        if size:
            frames[m.group(1)] = max(frames.get(m.group(1), 0), int(size.group(1)))
    for m in re.finditer(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', text):
        edges.setdefault(m.group(1), set()).add(m.group(2))


def _deepest(name: str, frames: dict[str, int], edges: dict[str, set], seen=()) -> int:
    if name in seen:  # libgcc's helpers branch to each other (dsub into dadd): not deeper
        return 0
    below = [_deepest(c, frames, edges, seen + (name,)) for c in edges.get(name, ())]
    return frames.get(name, 0) + max(below, default=0)


_PUSH = re.compile(r"\s(?:push(?:\.w)?|stmdb(?:\.w)?\s+sp!,)\s*\{([^}]*)\}")
_VPUSH = re.compile(r"\svpush\s*\{([^}]*)\}")
_SUB_SP = re.compile(r"\ssub(?:\.w|w)?\s+sp,\s*(?:sp,\s*)?#(\d+)")
_CALL = re.compile(r"\s(?:bl|blx|b|b\.w|b\.n)\s+([0-9a-f]+)\s+<")
# A push written as a store with pre-decrement (libgcc's compare helpers: str ip, [sp, #-4]!).
_STR_PRE = re.compile(r"\sstr[bhd]?(?:\.w)?\s+[^\[]*\[sp,\s*#-(\d+)\]!")
# Instructions after which a function does not run on into the next one.
_ENDS = re.compile(r"\s(?:bx\s+lr|pop(?:\.w)?\s*\{[^}]*pc\}|ldmia(?:\.w)?\s+sp!,\s*\{[^}]*pc\}"
                   r"|ldr(?:\.w)?\s+pc,|b(?:\.w|\.n)?\s+[0-9a-f]+\s+<)")
# Bump when the way frames are read changes, so cached results are recomputed.
STACK_MODEL = 2


def _write_atomic(path: Path, text: str) -> None:
    """A cache file that a concurrent run never reads half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _reg_count(regs: str) -> int:
    n = 0
    for part in regs.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(re.sub(r"\D", "", p)) for p in part.split("-"))
            n += hi - lo + 1
        elif part:
            n += 1
    return n


def _external_frames(names: set[str], board) -> tuple[dict[str, int], dict[str, set]]:
    """Frames and calls of toolchain library functions, from a disassembled probe image."""
    key = hashlib.sha256(json.dumps([STACK_MODEL, sorted(names), core_flags(board)]).encode()
                         ).hexdigest()[:16]
    cached = cache_root() / "stack" / f"lib-{key}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return data["frames"], {k: set(v) for k, v in data["edges"].items()}
    gcc = arm_tool("gcc")
    with tempfile.TemporaryDirectory(prefix="mcunet-stack-") as tmp:
        tmp = Path(tmp)
        decls = "".join(f"extern char {n}[];\n" for n in sorted(names))
        refs = ", ".join(sorted(names))
        (tmp / "probe.c").write_text(f"{decls}void *const mcunet_refs[] = {{ {refs} }};\n"
                                     "void _start(void) {}\n")
        what = "linking the toolchain's library functions for the stack bound"
        run_tool([gcc, *core_flags(board), "-O2", "-nostartfiles", "--specs=nano.specs",
                  "--specs=nosys.specs", "-Wl,--undefined=mcunet_refs", "-Wl,-e,_start",
                  str(tmp / "probe.c"), "-o", str(tmp / "probe.elf")], what)
        syms = run_tool([arm_tool("nm"), "-n", str(tmp / "probe.elf")], what)
        asm = run_tool([arm_tool("objdump"), "-d", str(tmp / "probe.elf")], what)
    starts: dict[int, list[str]] = {}
    for line in syms.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            starts.setdefault(int(parts[0], 16) & ~1, []).append(parts[2])
    bounds = sorted(starts)
    frames_at: dict[int, int] = {a: 0 for a in bounds}
    calls_at: dict[int, set] = {a: set() for a in bounds}
    last: dict[int, str] = {}
    for line in asm.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s", line)
        if not m or not bounds:
            continue
        addr = int(m.group(1), 16)
        i = bisect.bisect_right(bounds, addr) - 1
        if i < 0:
            continue
        fn = bounds[i]
        last[fn] = line
        if p := _PUSH.search(line):
            frames_at[fn] += 4 * _reg_count(p.group(1))
        elif p := _STR_PRE.search(line):
            frames_at[fn] += int(p.group(1))
        elif p := _VPUSH.search(line):
            regs = p.group(1)
            frames_at[fn] += (8 if "d" in regs else 4) * _reg_count(regs)
        elif p := _SUB_SP.search(line):
            frames_at[fn] += int(p.group(1))
        elif p := _CALL.search(line):
            target = int(p.group(1), 16)
            j = bisect.bisect_right(bounds, target) - 1
            if j >= 0 and bounds[j] != fn:
                calls_at[fn].add(starts[bounds[j]][0])
    # A function that runs on into the next (libgcc's __aeabi_dsub into __adddf3) calls it.
    for fn, after in zip(bounds, bounds[1:]):
        if fn in last and not _ENDS.search(last[fn]):
            calls_at[fn].add(starts[after][0])
    frames, edges = {}, {}
    for addr, labels in starts.items():
        for label in labels:
            frames[label] = frames_at[addr]
            edges[label] = calls_at[addr]
    _write_atomic(cached, json.dumps({"frames": frames,
                                      "edges": {k: sorted(v) for k, v in edges.items()}}))
    return frames, edges


def library_stack_bytes(files: dict[str, str], board) -> int:
    """Deepest stack below (and including) mcunet_invoke for a rendered library."""
    digest = hashlib.sha256(json.dumps([STACK_MODEL, sorted(files.items()), core_flags(board),
                                        LIBRARY_CFLAGS]).encode()).hexdigest()[:24]
    cached = cache_root() / "stack" / f"{digest}.json"
    if cached.exists():
        return json.loads(cached.read_text())["stack_bytes"]
    gcc = arm_tool("gcc")
    frames: dict[str, int] = {}
    edges: dict[str, set] = {}
    with tempfile.TemporaryDirectory(prefix="mcunet-su-") as tmp:
        tmp = Path(tmp)
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        sources = sorted(rel for rel in files if rel.endswith(".c"))

        def compile_one(rel: str):
            obj = tmp / (rel.replace("/", "_") + ".o")
            proc = subprocess.run([gcc, *core_flags(board), *LIBRARY_CFLAGS, "-fcallgraph-info=su",
                                   "-I", str(tmp), "-c", str(tmp / rel), "-o", str(obj)],
                                  capture_output=True, text=True, cwd=tmp)
            return rel, obj, proc

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            for rel, obj, proc in pool.map(compile_one, sources):
                if proc.returncode != 0:
                    raise McunetError(f"arm-none-eabi-gcc rejected the generated {rel} (a bug in "
                                      f"mcunet; please report it):\n{proc.stderr.strip()[-3000:]}")
                _parse_callgraph(obj.with_suffix(".ci").read_text(), frames, edges)
    if ENTRY not in frames:
        raise McunetError("no stack usage for mcunet_invoke in gcc's call graph")
    external = {c for cs in edges.values() for c in cs if c not in frames}
    if external:
        lib_frames, lib_edges = _external_frames(external, board)
        for name, size in lib_frames.items():
            frames.setdefault(name, size)
        for name, calls in lib_edges.items():
            edges.setdefault(name, set()).update(calls)
    result = _deepest(ENTRY, frames, edges)
    cached.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(cached, json.dumps({"stack_bytes": result}))
    return result

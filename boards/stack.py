"""The library's footprint on an Arm core: the deepest stack it needs, NAME_invoke plus the
deepest chain of calls below it, and the bytes of its code and constants (mcunet.footprint).

With Arm GCC (on PATH, or PlatformIO's toolchain package) the library is compiled as firmware
compiles it, with -fcallgraph-info=su (-fstack-usage per function plus the edges between
them): the stack is the deepest path, the code bytes the objects' sections. Calls that leave
the library (libgcc's soft-float helpers on cores without a double FPU, newlib's memcpy) get
their frames from the toolchain's own libraries: a probe image linking exactly those
functions is disassembled and each function's pushes and stack adjustments are added up,
following its calls.

Without Arm GCC (a real board's project written on a machine that cannot build it) the
figures come from a table measured with it (boards/footprint_table.py, scripts/
fit_footprint_table.py): per kernel and core, the deepest stack seen and a fit of the code
bytes to the rendered source's length."""
from __future__ import annotations

import bisect
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

from mcunet.costmodel import FITTED_AS
from mcunet.errors import McunetError
from mcunet.footprint import (FOOTPRINT_MODEL, LIBRARY_CFLAGS, Footprint, cache_folder,
                              compile_objects, digest, flash_bytes_of_object, is_weights,
                              write_atomic)

from .elf import map_layout, helper_bytes
from .toolchain import ArmCore, arm_bin_dir, arm_tool, gcc_version, run_tool


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
STACK_MODEL = 4  # 4: a training build's NAME_train_step is an entry too


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


def _external_frames(names: set[str], core: ArmCore) -> tuple[dict[str, int], dict[str, set], int]:
    """Frames and calls of toolchain library functions, from a disassembled probe image, and
    the flash of the libgcc members defining them (mcunet.boards.elf.helper_bytes: the
    library's share of the image counts them)."""
    key = hashlib.sha256(json.dumps([STACK_MODEL, sorted(names), core.flags]).encode()
                         ).hexdigest()[:16]
    cached = cache_folder("stack") / f"lib-{key}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return data["frames"], {k: set(v) for k, v in data["edges"].items()}, data["helpers"]
    gcc = arm_tool("gcc")
    with tempfile.TemporaryDirectory(prefix="mcunet-stack-") as tmp:
        tmp = Path(tmp)
        decls = "".join(f"extern char {n}[];\n" for n in sorted(names))
        refs = ", ".join(sorted(names))
        (tmp / "probe.c").write_text(f"{decls}void *const mcunet_refs[] = {{ {refs} }};\n"
                                     "void _start(void) {}\n")
        what = "linking the toolchain's library functions for the stack bound"
        run_tool([gcc, *core.flags, "-O2", "-nostartfiles", "--specs=nano.specs",
                  "--specs=nosys.specs", "-Wl,--undefined=mcunet_refs", "-Wl,-e,_start",
                  f"-Wl,-Map={tmp / 'probe.map'}", str(tmp / "probe.c"), "-o",
                  str(tmp / "probe.elf")], what)
        helpers = helper_bytes(map_layout((tmp / "probe.map").read_text()), names)
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
    write_atomic(cached, json.dumps({"frames": frames, "helpers": helpers,
                                     "edges": {k: sorted(v) for k, v in edges.items()}}))
    return frames, edges, helpers


def helper_table(names: set[str], core: ArmCore) -> dict[str, tuple[str, int]]:
    """symbol -> (libgcc member defining it, the member's flash bytes), for the table."""
    from .elf import _defines, _input_sections

    gcc = arm_tool("gcc")
    with tempfile.TemporaryDirectory(prefix="mcunet-helpers-") as tmp:
        tmp = Path(tmp)
        decls = "".join(f"extern char {n}[];\n" for n in sorted(names))
        (tmp / "probe.c").write_text(f"{decls}void *const mcunet_refs[] = {{ "
                                     f"{', '.join(sorted(names))} }};\nvoid _start(void) {{}}\n")
        run_tool([gcc, *core.flags, "-O2", "-nostartfiles", "--specs=nano.specs",
                  "--specs=nosys.specs", "-Wl,--undefined=mcunet_refs", "-Wl,-e,_start",
                  f"-Wl,-Map={tmp / 'probe.map'}", str(tmp / "probe.c"), "-o",
                  str(tmp / "probe.elf")], "linking the toolchain's helpers")
        layout = map_layout((tmp / "probe.map").read_text())
    sizes: dict[str, int] = {}
    for _, size, obj in _input_sections(layout):
        if "libgcc.a(" in obj:
            sizes[obj] = sizes.get(obj, 0) + size
    table = {}
    for obj, size in sizes.items():
        member = obj[obj.index("libgcc.a(") + 9:-1]
        for symbol in _defines(layout, obj) & names:
            table[symbol] = (member, size)
    return table


def library_name(files: dict[str, str]) -> str:
    """The library's name, from its one NAME_model.c."""
    for rel in files:
        if rel.endswith("_model.c") and "/" not in rel:
            return rel[:-len("_model.c")]
    raise McunetError("the library has no NAME_model.c")


def arm_footprint(files: dict[str, str], core: ArmCore) -> Footprint:
    """The library's deepest stack and code bytes on the core: from Arm GCC where it is
    installed, else from the table."""
    key = digest(FOOTPRINT_MODEL, STACK_MODEL, sorted(files.items()), core.flags, LIBRARY_CFLAGS)
    cached = cache_folder("footprint") / f"arm-{key}.json"
    if cached.exists():
        return Footprint(**json.loads(cached.read_text()))
    if arm_bin_dir() is None:
        return table_footprint(files, core)
    gcc = arm_tool("gcc")
    frames: dict[str, int] = {}
    edges: dict[str, set] = {}
    tmp, objects = compile_objects_for(gcc, core, files)
    try:
        for rel, obj in objects.items():
            _parse_callgraph(obj.with_suffix(".ci").read_text(), frames, edges)
        code = sum(flash_bytes_of_object(obj) for rel, obj in objects.items()
                   if not is_weights(rel))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    name = library_name(files)
    entry = f"{name}_invoke"
    if entry not in frames:
        raise McunetError(f"no stack usage for {entry} in gcc's call graph")
    # A --train build's NAME_train_step runs the forward (NAME_invoke) below its own frame:
    # the library's deepest stack is the deeper of the two entries.
    entries = [entry] + [e for e in (f"{name}_train_step",) if e in frames]
    external = {c for cs in edges.values() for c in cs if c not in frames}
    if external:
        lib_frames, lib_edges, helpers = _external_frames(external, core)
        code += helpers
        for name, size in lib_frames.items():
            frames.setdefault(name, size)
        for name, calls in lib_edges.items():
            edges.setdefault(name, set()).update(calls)
    result = Footprint(stack_bytes=max(_deepest(e, frames, edges) for e in entries),
                       code_bytes=code,
                       source=gcc_version(gcc))
    write_atomic(cached, json.dumps(result.__dict__))
    return result


def compile_objects_for(gcc: str, core: ArmCore, files: dict[str, str]):
    """The library's objects for the core, with their call graphs (.ci beside each .o)."""
    return compile_objects([gcc, *core.flags], files, LIBRARY_CFLAGS + ["-fcallgraph-info=su"],
                           "arm-none-eabi-gcc")


def kernel_stem(function: str, name: str) -> str:
    """conv2d_s8_dsp from the kernel function kws_conv2d_s8_dsp_3."""
    return re.sub(r"_\d+$", "", function[len(name) + 1:])


def table_footprint(files: dict[str, str], core: ArmCore) -> Footprint:
    """The footprint from the table measured with Arm GCC, for machines without it: the
    deepest stack is the driver's frame plus the deepest kernel's (with its callees) seen for
    that kernel over the table's corpus; the code bytes a line in the rendered source's
    length per kernel, in the number of calls for the driver, and the libgcc helpers the
    kernels call."""
    from .footprint_table import TABLE

    if core.cpu not in TABLE:
        raise McunetError(f"no Arm GCC found and no footprint table for {core.cpu}; "
                          "install the GNU Arm toolchain (Debian/Ubuntu: apt-get install "
                          "gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    stack, code = _from_table(files, TABLE[core.cpu])
    return Footprint(stack_bytes=stack, code_bytes=code, source="table (no Arm GCC found)")


def table_code_bytes(files: dict[str, str], cpu: str) -> int:
    """The library's code bytes on a core ("cortex-m4", ...; "host": the host's C compiler)
    from the table, in the milliseconds that rendering takes rather than the seconds that
    compiling does: the architecture search's flash estimate for each candidate (the
    exported winner's code is then compiled and measured)."""
    from .footprint_table import TABLE

    if cpu not in TABLE:
        raise McunetError(f"no code-size table for {cpu} (boards/footprint_table.py has "
                          f"{', '.join(TABLE)}); scripts/fit_footprint_table.py --cores {cpu} "
                          "fits one")
    return _from_table(files, TABLE[cpu])[1]


def _from_table(files: dict[str, str], table: dict) -> tuple[int, int]:
    """(deepest stack, code bytes) of the library from one core's table."""
    name = library_name(files)
    model = files[f"{name}_model.c"]
    calls = len(re.findall(rf"^    {name}_\w+\(", model, re.M))
    driver = table["driver"]
    stack, code, helpers = 0, driver["code"][0] + driver["code"][1] * calls, set()
    for rel, text in files.items():
        if rel.startswith("kernels/") and rel.endswith(".c"):
            stem = kernel_stem(Path(rel).stem, name)
            row = (table["kernels"].get(stem) or table["kernels"].get(FITTED_AS.get(stem, ""))
                   or table["kernels"]["*"])
            stack = max(stack, row["stack"])
            code += row["code"][0] + row["code"][1] * len(text)
            helpers.update(row.get("helpers", ()))
    members = {table["helpers"][h] for h in helpers if h in table.get("helpers", {})}
    code += sum(size for _, size in members)
    return driver["stack"] + stack, int(round(code))

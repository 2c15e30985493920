"""Emulated boards: run firmware under QEMU and count the instructions it executes with a
TCG plugin (boards/insn_count.c, built on demand with the host C compiler)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mcunet.errors import McunetError

from .toolchain import cache_root, require

PLUGIN_SOURCE = Path(__file__).resolve().parent / "insn_count.c"


def plugin_path() -> Path:
    """The instruction-counting plugin, compiled once per source version into the cache."""
    source = PLUGIN_SOURCE.read_bytes()
    folder = cache_root() / "qemu-plugin"
    lib = folder / f"insn_count-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if lib.exists():
        return lib
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise McunetError("no host C compiler to build QEMU's instruction-counting plugin; "
                          "install one (Debian: apt-get install gcc)")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(f".tmp{os.getpid()}")  # unique among concurrent runs
    proc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(PLUGIN_SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise McunetError(f"building the QEMU plugin failed:\n{proc.stderr.strip()[-2000:]}")
    tmp.replace(lib)
    return lib


@dataclass
class QemuRun:
    stdout: str  # what the firmware wrote (QEMU sends semihosting output to stderr)
    marks: list[int]  # the instruction counter each time the mark address ran
    total_instructions: int
    returncode: int


def qemu_command(elf: Path, machine: str, mark_address: int | None,
                 serial: str = "none") -> list[str]:
    """QEMU with the instruction-counting plugin (marks at `mark_address`) and semihosting;
    `serial`: where UART0 goes (none, or e.g. tcp:127.0.0.1:PORT,server=on,wait=on)."""
    plugin = f"{plugin_path()}" + (f",mark={mark_address:#x}" if mark_address is not None else "")
    return [require("qemu-system-arm"), "-M", machine, "-display", "none", "-serial", serial,
            "-monitor", "none", "-semihosting-config", "enable=on,target=native", "-kernel",
            str(elf), "-plugin", plugin, "-d", "plugin"]


def instruction_marks(stderr: str) -> list[int]:
    """The plugin's instruction counts at each mark, from QEMU's stderr."""
    if "mcunet-insn lost marks" in stderr:
        raise McunetError("the instruction-counting plugin ran out of memory for its samples; "
                          "run fewer rows at a time")
    return [int(m) for m in re.findall(r"^mcunet-insn mark (\d+)$", stderr, re.M)]


def run_qemu(elf: Path, machine: str, mark_address: int | None, timeout: float,
             cwd: Path | None = None) -> QemuRun:
    """Run the ELF; `cwd`: QEMU's working directory, where the firmware's semihosting file
    calls open their relative names (on-device training's samples and results)."""
    cmd = qemu_command(elf, machine, mark_address)
    if cwd is not None:
        cmd[cmd.index(str(elf))] = str(Path(elf).resolve())
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise McunetError(f"the firmware on emulated {machine} did not finish in {timeout:g} s "
                          "(it may be stuck; pass a longer --timeout if the model is large)") \
            from None
    marks = instruction_marks(proc.stderr)
    total = re.search(r"^mcunet-insn total (\d+)$", proc.stderr, re.M)
    if total is None:
        raise McunetError(f"QEMU ({machine}) failed (exit {proc.returncode}):\n"
                          f"{proc.stderr.strip()[-2000:]}")
    return QemuRun(proc.stdout + proc.stderr, marks, int(total.group(1)), proc.returncode)

"""What a firmware image occupies, read from its ELF with the Arm binutils: flash (every
allocated section with contents), static RAM (writable allocated sections; the stack region
is measured at run time instead) and the sizes and addresses of named symbols."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .toolchain import arm_tool, run_tool

STACK_SECTIONS = (".stack", "._user_heap_stack", ".heap")


@dataclass
class ElfImage:
    sections: dict[str, tuple[str, str, int, int]]  # name -> (type, flags, address, size)
    symbols: dict[str, tuple[int, int]]  # name -> (address, size)

    @property
    def flash_bytes(self) -> int:
        return sum(size for kind, flags, _, size in self.sections.values()
                   if "A" in flags and kind != "NOBITS")

    @property
    def static_ram_bytes(self) -> int:
        return sum(size for name, (kind, flags, _, size) in self.sections.items()
                   if "A" in flags and "W" in flags and name not in STACK_SECTIONS)

    def size(self, name: str) -> int:
        return self.symbols.get(name, (0, 0))[1]

    def address(self, name: str) -> int | None:
        return self.symbols[name][0] if name in self.symbols else None


def read_elf(path: Path) -> ElfImage:
    out = run_tool([arm_tool("readelf"), "-S", "-W", str(path)], f"reading {path}")
    sections = {}
    # [Nr] Name Type Address Off Size ES Flg Lk Inf Al
    for m in re.finditer(r"^\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+"
                         r"([0-9a-f]+)\s+[0-9a-f]+\s+([A-Za-z]*)\s", out, re.M):
        name, kind, addr, size, flags = m.groups()
        sections[name] = (kind, flags, int(addr, 16), int(size, 16))
    out = run_tool([arm_tool("nm"), "-S", "--defined-only", str(path)], f"reading {path}")
    symbols = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
        elif len(parts) == 3:
            symbols.setdefault(parts[2], (int(parts[0], 16), 0))
    return ElfImage(sections, symbols)

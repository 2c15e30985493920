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


# An input section of a link map: " NAME  0xADDRESS  0xSIZE  OBJECT", the name alone on its line
# when long. The object must be on the address's line: a "*fill*" line (padding, no object)
# must not take the next section's line for its object (and so hide that section).
_MAP_SECTION = re.compile(r"^ (\S+)[ \t]*\n?[ \t]+0x([0-9a-f]+)[ \t]+0x([0-9a-f]+)[ \t]+(\S[^\n]*)$",
                          re.M)
_OUTPUT_SECTION = re.compile(r"^(\.\S+|COMMON)\b", re.M)
# Output sections that take no flash: RAM without contents, and what is never loaded.
_NOT_FLASH = (".bss", "COMMON", ".stack", ".heap", ".noinit", ".debug", ".comment",
              ".ARM.attributes", ".stab", ".gnu.attributes", ".note")


def library_flash_bytes(map_path: Path, library: str) -> int | None:
    """What a library (lib/NAME_model) occupies in the linked image: the sections of its
    object files that go to flash, and the members of libgcc (the compiler's soft-float and
    64-bit helpers) that define a function its objects call. None without a link map."""
    try:
        text = map_path.read_text(errors="replace")
    except OSError:
        return None
    layout = map_layout(text)
    ours = re.compile(rf"/(?:lib{re.escape(library)}\.a\(|{re.escape(library)}/)")
    total = sum(size for name, size, obj in _input_sections(layout) if ours.search(obj))
    # PlatformIO writes the map with paths relative to the project: .pio/build/ENV/.
    called = _undefined_in_library(text, library, map_path.resolve().parents[3])
    return total + helper_bytes(layout, called)


def map_layout(map_text: str) -> str:
    return map_text[map_text.find("Linker script and memory map"):]


def _input_sections(layout: str) -> list[tuple[str, int, str]]:
    """(name, size, object) of the input sections placed in flash: those inside an output
    section that is loaded into flash (not .bss, the stack or debugging information)."""
    found = []
    starts = [(m.start(), m.group(1)) for m in _OUTPUT_SECTION.finditer(layout)]
    for (begin, name), (end, _) in zip(starts, starts[1:] + [(len(layout), "")]):
        if name.startswith(_NOT_FLASH):
            continue
        for section, _, size, obj in _MAP_SECTION.findall(layout[begin:end]):
            if int(size, 16) > 0 and not section.startswith(_NOT_FLASH):
                found.append((section, int(size, 16), obj.strip()))
    return found


def helper_bytes(layout: str, called: set[str]) -> int:
    """The flash of the libgcc members that define one of the `called` functions."""
    members: dict[str, int] = {}
    for _, size, obj in _input_sections(layout):
        if "libgcc.a(" in obj:
            members[obj] = members.get(obj, 0) + size
    return sum(size for obj, size in members.items() if _defines(layout, obj) & called)


def _undefined_in_library(text: str, library: str, project: Path) -> set[str]:
    """The functions the library's objects call but do not define (from its archive)."""
    m = re.search(rf"(\S*lib{re.escape(library)}\.a)\(", text)
    if m is None:
        return set()
    archive = Path(m.group(1))
    archive = archive if archive.is_absolute() else project / archive
    out = run_tool([arm_tool("nm"), "-u", str(archive)], f"reading {archive}")
    return {line.split()[-1] for line in out.splitlines() if line.strip().startswith("U ")}


def _defines(layout: str, obj: str) -> set[str]:
    """The symbols the map lists under an input section of `obj`."""
    names = set()
    for m in re.finditer(rf"0x[0-9a-f]+\s+0x[0-9a-f]+\s+{re.escape(obj)}\n((?:\s+0x[0-9a-f]+\s+\S+\n)+)",
                         layout):
        names.update(line.split()[-1] for line in m.group(1).splitlines())
    return names


def library_ram_bytes(map_path: Path, library: str) -> int | None:
    """The static RAM a library (lib/NAME_model) occupies in the linked image: the .data and
    .bss input sections of its object files (its arena, and a --train build's state). None
    without a link map."""
    try:
        text = map_path.read_text(errors="replace")
    except OSError:
        return None
    ours = re.compile(rf"/(?:lib{re.escape(library)}\.a\(|{re.escape(library)}/)")
    return sum(int(size, 16) for section, _, size, obj in _MAP_SECTION.findall(map_layout(text))
               if section.startswith((".data", ".bss", "COMMON")) and ours.search(obj))



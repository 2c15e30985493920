"""What the generated library occupies on its target beside the arena: the deepest stack of
NAME_invoke and the bytes of its code and constants, weights excluded (the plan knows those
exactly). Targets supply the numbers (mcunet.target.Target.footprint): Arm cores from Arm GCC
or a table (mcunet.boards.stack), the host from its own C compiler.

The code bytes are the allocated, non-empty sections of the library's object files compiled
as firmware compiles them (-O2, one section per function and per array): what the linker
keeps of the library in a -Wl,--gc-sections image, less the padding between sections."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import McunetError

# How every build of the library compiles it (firmware builds use the same flags).
LIBRARY_CFLAGS = ["-std=c99", "-O2", "-ffunction-sections", "-fdata-sections"]
FOOTPRINT_MODEL = 1  # bump when the way footprints are computed changes (cached results)


@dataclass(frozen=True)
class Footprint:
    stack_bytes: int  # the deepest stack of NAME_invoke and all it calls (0: not bounded)
    code_bytes: int  # the library's code and constants in flash, weights excluded
    source: str  # how the figures were found: "arm-none-eabi-gcc 12.2.1", "table", "cc"


def cache_folder(kind: str) -> Path:
    root = os.environ.get("MCUNET_CACHE") or \
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mcunet"
    return Path(root) / kind


def write_atomic(path: Path, text: str) -> None:
    """A cache file that a concurrent run never reads half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------
# Object files: section sizes straight from the ELF header (32- or 64-bit, either byte order)

SHF_ALLOC = 0x2
SHT_NOBITS = 8


def section_sizes(path: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (type, flags, size) of every section of an ELF object file."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF":
        raise McunetError(f"{path} is not an ELF object file")
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if wide:
        shoff, = struct.unpack_from(order + "Q", data, 0x28)
        entsize, count, names = struct.unpack_from(order + "HHH", data, 0x3A)
        layout = order + "IIQQQQ"  # name, type, flags, addr, offset, size
    else:
        shoff, = struct.unpack_from(order + "I", data, 0x20)
        entsize, count, names = struct.unpack_from(order + "HHH", data, 0x2E)
        layout = order + "IIIIII"
    headers = [struct.unpack_from(layout, data, shoff + k * entsize) for k in range(count)]
    strtab_offset = headers[names][4]

    def name(offset: int) -> str:
        end = data.index(b"\0", strtab_offset + offset)
        return data[strtab_offset + offset:end].decode()

    return {name(h[0]): (h[1], h[2], h[5]) for h in headers[1:]}


def flash_bytes_of_object(path: Path) -> int:
    """Allocated sections with contents (code, constants, initialised data's load image)."""
    return sum(size for kind, flags, size in section_sizes(path).values()
               if flags & SHF_ALLOC and kind != SHT_NOBITS)


def is_weights(rel: str) -> bool:
    """The library's weights file (NAME_weights.c): its bytes are the plan's flash_bytes."""
    return rel.endswith("_weights.c") and "/" not in rel


def compile_objects(compiler: list[str], files: dict[str, str], flags: list[str],
                    what: str) -> tuple[Path, dict[str, Path]]:
    """Compile every .c of a library into a temporary folder (kept while the caller reads it);
    returns the folder and rel -> object path."""
    tmp = Path(tempfile.mkdtemp(prefix="mcunet-objects-"))
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    sources = sorted(rel for rel in files if rel.endswith(".c"))

    def one(rel: str):
        obj = tmp / (rel.replace("/", "_") + ".o")
        proc = subprocess.run([*compiler, *flags, "-I", str(tmp), "-c", str(tmp / rel), "-o",
                               str(obj)], capture_output=True, text=True, cwd=tmp)
        return rel, obj, proc

    objects = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for rel, obj, proc in pool.map(one, sources):
            if proc.returncode != 0:
                raise McunetError(f"{what} rejected the generated {rel} (a bug in mcunet; please "
                                  f"report it):\n{proc.stderr.strip()[-3000:]}")
            objects[rel] = obj
    return tmp, objects


def find_cc() -> str:
    """The host C compiler: $CC, else cc."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise McunetError(f"no C compiler '{cc}' found; install one (Debian: apt-get install gcc) "
                          "or set CC")
    return cc


def host_footprint(files: dict[str, str], cc: str | None = None) -> Footprint:
    """The host: code bytes from the host C compiler; its stack is not bounded (0)."""
    cc = cc or find_cc()
    key = digest(FOOTPRINT_MODEL, sorted(files.items()), cc, LIBRARY_CFLAGS)
    cached = cache_folder("footprint") / f"host-{key}.json"
    if cached.exists():
        return Footprint(**json.loads(cached.read_text()))
    tmp, objects = compile_objects([cc], files, LIBRARY_CFLAGS, f"the host C compiler ({cc})")
    try:
        code = sum(flash_bytes_of_object(obj) for rel, obj in objects.items()
                   if not is_weights(rel))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = Footprint(stack_bytes=0, code_bytes=code, source=Path(cc).name)
    write_atomic(cached, json.dumps(result.__dict__))
    return result

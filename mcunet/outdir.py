"""Where mcunet writes: only where asked, never creating missing parent folders, never mixing
its files into a folder of unrelated ones.

An output folder (`compile --out`, `build --out`, `deploy --out`) must be new (its parent must
exist: mcunet creates the folder itself, nothing above it), empty, or one mcunet wrote before.
mcunet marks the folders it writes with MANIFEST, a small text file listing what it wrote; a
rewrite removes the listed files it does not write again (the kernels of a previous model),
and never touches anything else. An output file (`plan --png`, `simulate --output`, `run
--json`) must go into an existing folder.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterable

from . import __version__
from .errors import McunetError

MANIFEST = ".mcunet-files"
_HEADER = "# files mcunet {version} wrote here (a rewrite may replace or remove them)\n"


def _parent_exists(path: Path, option: str) -> None:
    parent = path.resolve().parent if path.name in ("", ".", "..") else path.parent
    parent = parent if str(parent) else Path(".")
    if not parent.exists():
        raise McunetError(f"{option} {path}: the folder {parent} does not exist; create it "
                          "first (mcunet does not create missing parent folders)")
    if not parent.is_dir():
        raise McunetError(f"{option} {path}: {parent} is not a folder")


def check_file(path: str | Path, option: str) -> Path:
    """An output file: its folder exists, and it is not itself a folder."""
    path = Path(path)
    if path.is_dir():
        raise McunetError(f"{option} {path} is a folder; give a file name")
    _parent_exists(path, option)
    return path


def written_before(path: Path) -> list[str]:
    """The files a previous run listed in the folder's manifest ([] without one)."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return []
    return [line.strip() for line in manifest.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith("#")]


def check_dir(path: str | Path, option: str = "--out") -> Path:
    """An output folder mcunet may write into (see the module docstring); creates nothing."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise McunetError(f"{option} {path} is a file, not a folder; give a new or empty "
                              "folder")
        if (path / MANIFEST).is_file():
            return path
        try:
            entries = sorted(os.listdir(path))
        except OSError as exc:
            raise McunetError(f"{option} {path}: cannot read the folder ({exc.strerror})") from None
        if entries:
            shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4
                                              else "")
            raise McunetError(f"{option} {path} holds files mcunet did not write ({shown}); give "
                              "a new or empty folder, or one mcunet wrote before")
        return path
    _parent_exists(path, option)
    return path


def make_dir(path: str | Path, option: str = "--out") -> Path:
    """check_dir, then create the folder (not its parents) if it is new."""
    path = check_dir(path, option)
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise McunetError(f"{option} {path}: cannot create the folder ({exc.strerror})") from None
    return path


def _inside(rel: str) -> bool:
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts


def record(path: str | Path, files: Iterable[str | Path]) -> None:
    """After writing `files` (relative to `path`): remove the files the previous manifest
    listed that were not written now (and folders that leaves empty), write the manifest."""
    path = Path(path)
    now = sorted({str(PurePosixPath(Path(f))) for f in files})
    for rel in set(written_before(path)) - set(now):
        target = path / rel
        if _inside(rel) and target.is_file() and not target.is_symlink():
            target.unlink()
            parent = target.parent
            while parent != path and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    (path / MANIFEST).write_text(_HEADER.format(version=__version__) + "".join(
        f"{rel}\n" for rel in now))

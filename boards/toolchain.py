"""The outside tools firmware needs (arm-none-eabi-gcc, QEMU, PlatformIO), found or
provisioned on demand, with an install hint when one is missing.

PlatformIO runs every build through its core package `tool-scons`, which it would download
from its registry. Here that package is assembled from the SCons that pip installed with
mcunet (PyPI's `scons`), so `pio run` works offline right after `pip install mcunet`."""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mcunet.errors import McunetError

ARM_GCC = "arm-none-eabi-gcc"
TOOL_SCONS_VERSION = "4.41101.0"  # what PlatformIO 6 asks for (~4.41101.0)
PLATFORM_DIR = Path(__file__).resolve().parent / "platform"

HINTS = {
    ARM_GCC: "install the GNU Arm toolchain (Debian/Ubuntu: apt-get install gcc-arm-none-eabi "
             "libnewlib-arm-none-eabi; or scripts/setup.sh)",
    "qemu-system-arm": "install QEMU for Arm (Debian/Ubuntu: apt-get install qemu-system-arm; "
                       "or scripts/setup.sh)",
}


@dataclass(frozen=True)
class ArmCore:
    """An Arm core as gcc sees it: -mcpu and the floating-point unit (None: soft float)."""
    cpu: str  # cortex-m4
    fpu: str | None  # fpv4-sp-d16

    @property
    def flags(self) -> list[str]:
        flags = [f"-mcpu={self.cpu}", "-mthumb"]
        return flags + ([f"-mfpu={self.fpu}", "-mfloat-abi=hard"] if self.fpu
                        else ["-mfloat-abi=soft"])


# The usual FPU of each core, for a --target without a board (the int8 kernels use none; a
# model with float inputs or outputs converts them with it).
CORE_FPU = {"cortex-m0plus": None, "cortex-m3": None, "cortex-m4": "fpv4-sp-d16",
            "cortex-m7": "fpv5-d16", "cortex-m33": "fpv5-sp-d16", "cortex-m55": "auto"}


def cache_root() -> Path:
    root = os.environ.get("MCUNET_CACHE") or \
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mcunet"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def require(tool: str) -> str:
    """The full path of a command-line tool, or an error saying how to install it."""
    path = shutil.which(tool)
    if path is None:
        hint = HINTS.get(tool, "install it and put it on PATH")
        raise McunetError(f"'{tool}' was not found on PATH; {hint}")
    return path


# PlatformIO's own GNU Arm toolchain, which the vendor platforms (ststm32, nordicnrf52,
# raspberrypi) install on first use: <core>/packages/toolchain-gccarmnoneeabi*/bin.
PIO_TOOLCHAIN = "toolchain-gccarmnoneeabi"


def _platformio_toolchains() -> list[Path]:
    cores = [Path(os.environ["PLATFORMIO_CORE_DIR"])] if os.environ.get("PLATFORMIO_CORE_DIR") \
        else []
    cores += [Path.home() / ".platformio", cache_root() / "platformio"]
    found = []
    for core in cores:
        found += sorted((core / "packages").glob(f"{PIO_TOOLCHAIN}*/bin"), reverse=True)
    return [d for d in found if (d / ARM_GCC).is_file()]


def arm_bin_dir() -> Path | None:
    """The folder of the GNU Arm toolchain: arm-none-eabi-gcc on PATH, else PlatformIO's
    toolchain package; None when neither is there."""
    on_path = shutil.which(ARM_GCC)
    if on_path:
        return Path(on_path).parent
    found = _platformio_toolchains()
    return found[0] if found else None


def arm_tool(name: str) -> str:
    """arm-none-eabi-<name> (gcc, nm, size, ...) from the toolchain arm_bin_dir() finds, with
    the install hint when there is none."""
    folder = arm_bin_dir()
    if folder is None:
        raise McunetError(f"'{ARM_GCC}' was not found on PATH nor in PlatformIO's "
                          f"{PIO_TOOLCHAIN} package; {HINTS[ARM_GCC]}")
    tool = folder / f"arm-none-eabi-{name}"
    if not tool.is_file():
        raise McunetError(f"{folder} has {ARM_GCC} but no arm-none-eabi-{name}; "
                          f"{HINTS[ARM_GCC]}")
    return str(tool)


@functools.lru_cache(maxsize=4)
def gcc_version(gcc: str) -> str:
    """'arm-none-eabi-gcc 12.2.1', for reports."""
    proc = subprocess.run([gcc, "-dumpversion"], capture_output=True, text=True)
    return f"{Path(gcc).name} {proc.stdout.strip() or '(unknown version)'}"


def run_tool(cmd: list[str], what: str) -> str:
    """Run a toolchain command and return its stdout; a failure (a missing newlib, a broken
    install) ends in one error with the command's last words and the install hint."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise McunetError(f"{what} failed ({Path(cmd[0]).name} exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-800:]}\nIf the toolchain is incomplete, "
                          f"{HINTS[ARM_GCC]}")
    return proc.stdout


def platformio_core_dir() -> Path:
    """PlatformIO's core folder: $PLATFORMIO_CORE_DIR if the user set one, else mcunet's cache
    (so mcunet never writes into ~/.platformio behind the user's back)."""
    if os.environ.get("PLATFORMIO_CORE_DIR"):
        return Path(os.environ["PLATFORMIO_CORE_DIR"])
    return cache_root() / "platformio"


def provision_tool_scons(core_dir: Path, packages: Path | None = None) -> Path:
    """Make <packages>/tool-scons (default $core/packages) from the installed SCons module
    (idempotent)."""
    target = (packages or core_dir / "packages") / "tool-scons"
    if (target / ".piopm").exists() and (target / "SCons").is_dir():
        return target
    try:
        import SCons
    except ImportError:
        raise McunetError("SCons is missing from this Python environment; reinstall mcunet "
                          "(pip install mcunet pulls in scons) or pip install scons") from None
    tmp = target.with_name(f".tool-scons-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # Without the DocBook stylesheets (20 MB that PlatformIO's builds never use).
    shutil.copytree(Path(SCons.__file__).parent, tmp / "SCons",
                    ignore=shutil.ignore_patterns("__pycache__", "docbook-xsl*"))
    (tmp / "scons.py").write_text(
        "# Entry script of PlatformIO's tool-scons package, assembled by mcunet from PyPI's scons.\n"
        "import os\nimport sys\n\n"
        "sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))\n"
        "from SCons.Script.Main import main  # noqa: E402\n\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n")
    (tmp / "package.json").write_text(json.dumps({
        "name": "tool-scons", "version": TOOL_SCONS_VERSION,
        "description": "SCons software construction tool (from PyPI's scons, via mcunet)"}))
    (tmp / ".piopm").write_text(json.dumps({
        "type": "tool", "name": "tool-scons", "version": TOOL_SCONS_VERSION,
        "spec": {"owner": "platformio", "id": None, "name": "tool-scons",
                 "requirements": None, "uri": None}}))
    if target.exists():  # a half-made or foreign package: replace it
        shutil.rmtree(target, ignore_errors=True)
    try:
        tmp.rename(target)
    except OSError:  # another process provisioned it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def pio_env() -> dict[str, str]:
    """Environment for running `pio`: mcunet's core folder with tool-scons provisioned, no
    update checks or telemetry (they would wait on the network)."""
    core = platformio_core_dir()
    core.mkdir(parents=True, exist_ok=True)
    provision_tool_scons(core)
    env = dict(os.environ)
    env.update(PLATFORMIO_CORE_DIR=str(core), PLATFORMIO_NO_ANSI="true",
               PLATFORMIO_SETTING_ENABLE_TELEMETRY="No",
               PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL="3650",
               PLATFORMIO_SETTING_CHECK_PLATFORMS_INTERVAL="3650",
               PLATFORMIO_SETTING_CHECK_PRUNE_SYSTEM_THRESHOLD="0")
    return env


def pio_command() -> list[str]:
    """`pio` from this Python environment (platformio is one of mcunet's dependencies)."""
    try:
        import platformio  # noqa: F401
    except ImportError:
        exe = shutil.which("pio") or shutil.which("platformio")
        if exe is None:
            raise McunetError("PlatformIO is missing; pip install platformio (it is one of "
                              "mcunet's dependencies)") from None
        return [exe]
    return [sys.executable, "-m", "platformio"]


def run_pio(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `pio ARGS` in a project folder; an error carries pio's own last lines."""
    try:
        proc = subprocess.run(pio_command() + args, cwd=cwd, env=pio_env(), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise McunetError(f"`pio {' '.join(args)}` did not finish in {timeout:.0f} s "
                          f"(project {cwd})") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise McunetError(f"`pio {' '.join(args)}` failed in {cwd} (exit {proc.returncode}):\n"
                          f"{tail}")
    return proc

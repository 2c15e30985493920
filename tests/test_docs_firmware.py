"""docs/firmware.md's recipes run as written: each `<!-- recipe: NAME -->` section's files
(`<!-- file: PATH -->` before a code block) are written and its shell blocks (`<!-- run -->`,
or `<!-- run: TOOL -->` for one that needs TOOL) run in order, in a fresh folder holding the
MLPerf models; then what the program printed is checked against TFLite's reference kernels."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcunet.reference import reference_outputs

from .conftest import MLPERF, ROOT, mlperf_model

DOC = ROOT / "docs" / "firmware.md"
BLOCK = re.compile(r"<!-- (file: (?P<file>\S+)|run(?P<tool>: \S+)?) -->\n```[a-z]*\n(?P<body>.*?)```",
                   re.S)


def recipes() -> dict[str, list[tuple[str, str, str]]]:
    """name -> [("file", path, text) | ("run", tool or "", commands)] in document order."""
    text = DOC.read_text()
    found = {}
    parts = re.split(r"<!-- recipe: (\S+) -->", text)
    for name, body in zip(parts[1::2], parts[2::2]):
        steps = []
        for m in BLOCK.finditer(body):
            if m.group("file"):
                steps.append(("file", m.group("file"), m.group("body")))
            else:
                steps.append(("run", (m.group("tool") or "")[2:], m.group("body")))
        found[name] = steps
    return found


def environment(tmp: Path) -> dict:
    """A shell with this environment's mcunet and pio first on PATH."""
    bin_dir = tmp / ".bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "mcunet").write_text(f"#!/bin/sh\nexec {sys.executable} -m mcunet \"$@\"\n")
    (bin_dir / "pio").write_text(f"#!/bin/sh\nexec {sys.executable} -m platformio \"$@\"\n")
    for tool in ("mcunet", "pio"):
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run_recipe(name: str, tmp: Path, before=None) -> str:
    """Write and run one recipe in `tmp`; returns what its commands printed."""
    for model in MLPERF:
        os.symlink(mlperf_model(model), tmp / model)
    env = environment(tmp)
    if before:
        before(tmp, env)
    printed = []
    for kind, what, body in recipes()[name]:
        if kind == "file":
            (tmp / what).parent.mkdir(parents=True, exist_ok=True)
            (tmp / what).write_text(body)
            continue
        if what and not shutil.which(what, path=env["PATH"]):
            continue  # a step for a tool this machine lacks (its test says so below)
        r = subprocess.run(["bash", "-e", "-c", body], cwd=tmp, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{name}: {body}\n{r.stdout}\n{r.stderr}"
        printed.append(r.stdout)
    return "".join(printed)


def kws_class_of_zeros() -> int:
    """What the recipes' programs compute: the keyword spotter on an input of int8 zeros."""
    (y,) = reference_outputs(mlperf_model("kws_ref_model.tflite").read_bytes(),
                             [np.zeros((1, 49, 10, 1), np.int8)])
    return int(np.argmax(y[0]))


def test_every_recipe_is_tested():
    assert set(recipes()) == {"makefile", "cmake", "platformio", "arduino", "two-models"}


def test_makefile_recipe(tmp_path):
    out = run_recipe("makefile", tmp_path)
    assert f"class {kws_class_of_zeros()} " in out


@pytest.mark.skipif(not shutil.which("cmake"), reason="needs cmake (apt-get install cmake)")
def test_cmake_recipe(tmp_path):
    out = run_recipe("cmake", tmp_path)
    assert f"class {kws_class_of_zeros()} " in out
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("the cross-compiling half needs arm-none-eabi-gcc")
    image = tmp_path / "build-arm" / "firmware"
    head = subprocess.run(["arm-none-eabi-readelf", "-h", str(image)], capture_output=True,
                          text=True).stdout
    assert "Machine:                           ARM" in head


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm (scripts/setup.sh)")
def test_platformio_recipe_on_the_emulated_m4(tmp_path):
    from mcunet.boards.qemu import run_qemu

    def emulated_project(tmp: Path, env: dict):
        # A user's PlatformIO project for the emulated board (what `mcunet build` writes,
        # into a folder of its own), emptied of mcunet's harness and library: an empty lib/
        # and src/, as `pio project init` leaves them.
        project = tmp / "emulated"
        r = subprocess.run(["mcunet", "build", str(tmp / "ad01_int8.tflite"), "--board",
                            "mps2-an386", "--out", str(project), "--no-build"], env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        for folder in ("src", "lib"):
            shutil.rmtree(project / folder)
            (project / folder).mkdir()
        shutil.copytree(project, tmp, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(project)

    run_recipe("platformio", tmp_path, before=emulated_project)
    elf = tmp_path / ".pio" / "build" / "mps2-an386" / "firmware.elf"
    run = run_qemu(elf, "mps2-an386", None, timeout=60)
    assert run.returncode == 0, run.stdout  # ran to the end of main (a fault exits 1)


ARDUINO_STUB = r"""
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <string.h>
struct SerialPort {
    void begin(long) {}
    void print(const char *s) { fputs(s, stdout); }
    void println(int v) { printf("%d\n", v); }
};
static SerialPort Serial;
inline void delay(unsigned long) {}
"""


def test_arduino_recipe(tmp_path):
    # The sketchbook, with its libraries/ folder.
    run_recipe("arduino", tmp_path, before=lambda tmp, env: (tmp / "libraries").mkdir())
    lib = tmp_path / "libraries" / "kws_model"
    assert (lib / "library.properties").is_file() and (lib / "src" / "kws_model.h").is_file()
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the sketch with")
    # As the Arduino build does: the library's C files with the C compiler, the sketch as
    # C++ with Arduino.h first (a stand-in here for the board's core).
    (tmp_path / "Arduino.h").write_text(ARDUINO_STUB)
    (tmp_path / "sketch_main.cpp").write_text(
        '#include "Arduino.h"\nvoid setup();\nvoid loop();\nint main() { setup(); loop(); }\n')
    objs = []
    for src in (lib / "src").rglob("*.c"):
        obj = tmp_path / f"{src.stem}.o"
        r = subprocess.run(["cc", "-std=c99", "-O2", "-I", str(lib / "src"), "-c", str(src), "-o",
                            str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        objs.append(str(obj))
    r = subprocess.run([cxx, "-include", str(tmp_path / "Arduino.h"), "-I", str(lib / "src"),
                        "-x", "c++", str(tmp_path / "kws_demo" / "kws_demo.ino"), "-x", "none",
                        str(tmp_path / "sketch_main.cpp"), *objs, "-o", str(tmp_path / "sketch")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(tmp_path / "sketch")], capture_output=True, text=True).stdout
    assert out == f"class {kws_class_of_zeros()}\n"


def test_two_models_recipe(tmp_path):
    out = run_recipe("two-models", tmp_path)
    (ad,) = reference_outputs(mlperf_model("ad01_int8.tflite").read_bytes(),
                              [np.zeros((1, 640), np.int8)])
    assert f"kws: class {kws_class_of_zeros()}\n" in out
    assert f"ad: output {ad[0][0]} {ad[0][1]} {ad[0][2]}\n" in out

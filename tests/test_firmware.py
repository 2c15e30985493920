"""Firmware on emulated Cortex-M boards (QEMU): PlatformIO builds with mcunet's local
platform, outputs bit-exact with TFLite's reference kernels, instruction counts and RAM
accounted for byte for byte."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcunet.boards import get_board
from mcunet.boards.elf import read_elf
from mcunet.boards.firmware import parse_harness, run_on_board
from mcunet.compiler import compile_model
from mcunet.errors import McunetError
from mcunet.reference import reference_outputs
from mcunet.host import random_inputs

from .conftest import MLPERF, ROOT, mlperf_model, run_cli
from .netgen import Net

needs_tools = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (scripts/setup.sh installs them)")


def check_run(name: str | Path, board_name: str, rows: int = 2, patch: str = "auto",
              same_rows: bool = False, work_dir: Path | None = None):
    """Run an MLPerf Tiny model (by file name) or any .tflite (a path) on an emulated board:
    outputs bit-exact with TFLite's reference kernels, RAM and flash as planned. Compiled as
    `mcunet run --board` compiles: for the board's core and its free flash (the DSP convs on
    int16 filters where it has room)."""
    board = get_board(board_name)
    path = name if isinstance(name, Path) else mlperf_model(name)
    model = compile_model(path, patch=patch, target=board.target, flash_budget=board.flash_bytes)
    inputs = random_inputs(model.graph, rows, seed=7)
    if same_rows:  # every row a copy of the first
        inputs = [np.repeat(x[:1], rows, axis=0) for x in inputs]
    result = run_on_board(model, board, inputs, work_dir=work_dir)
    expected = reference_outputs(path.read_bytes(), inputs)
    for mine, ref in zip(result.outputs, expected):
        assert mine.dtype == ref.dtype and mine.shape == ref.shape
        assert np.array_equal(mine, ref), f"{path.name} on {board_name}: outputs differ from TFLite"
    ram = result.ram
    # The arena in the image is the plan's, to the byte; the library's measured stack stays
    # within the -fstack-usage bound; the measured total is the sum of its parts.
    assert ram["arena_bytes"] == model.plan.arena_bytes
    assert 0 < ram["kernel_stack_bytes"] <= model.stack_bytes
    assert result.ram_bytes_measured == (ram["static_bytes"] + ram["kernel_stack_bytes"]
                                         + ram["harness_stack_bytes"])
    assert result.peak_sram_bytes == model.plan.arena_bytes + model.stack_bytes
    assert result.flash["weights_bytes"] == model.flash_bytes
    assert result.instructions and len(result.instructions_per_row) == rows
    return model, result


@needs_tools
def test_kws_on_m4_bit_exact_and_accounted():
    model, result = check_run("kws_ref_model.tflite", "mps2-an386", same_rows=True)
    assert result.dsp == get_board("mps2-an386").dsp
    # Instructions are counted exactly: the same row twice costs the same.
    assert result.instructions_per_row[0] == result.instructions_per_row[1]
    assert result.instructions_per_row[0] > model.macs


@needs_tools
def test_generated_net_on_m33_bit_exact_with_dsp_kernels(tmp_path):
    """The Cortex-M33 (mps2-an505: Armv8-M Mainline with the DSP extension, booting in
    Secure state): a small generated MBConv network runs bit-exact with the SMLAD/SXTB16
    kernels, linked at the Secure aliases of the AN505's memory map."""
    net = Net(seed=5)
    x = net.input(12, 12, 3)
    y = net.conv(x, 8, 3, stride=2)
    y = net.mbconv(y, 8, 3, 1, expand=2)
    path = tmp_path / "mbconv.tflite"
    path.write_bytes(net.build(net.head(y)))
    model, result = check_run(path, "mps2-an505", rows=2, work_dir=tmp_path / "fw")
    kernels = {s.kernel.name for s in model.steps if s.kernel}
    # The DSP conv without its records (at the peak) or on its int16 filter (flash to spare).
    if kernels & {"conv2d_s8_dsp_lean", "conv2d_s8_dsp_wide", "conv2d_s8_dsp_wide_lean"}:
        kernels.add("conv2d_s8_dsp")
    assert model.target.name == "cortex-m33" and result.dsp
    assert {"conv2d_s8_dsp", "depthwise_conv_inplace_s8_dsp",
            "fully_connected_s8_dsp_col"} <= kernels, kernels
    elf_path = tmp_path / "fw" / ".pio" / "build" / "mps2-an505" / "firmware.elf"
    elf = read_elf(elf_path)
    # The vector table at the IoTKit's INITSVTOR (0x10000000, SSRAM1's Secure alias), the
    # RAM in SSRAM2/3's Secure alias at 0x38000000.
    assert elf.sections[".text"][2] == 0x10000000
    assert 0x38000000 <= elf.sections[".bss"][2] < 0x38400000
    assert 0x38000000 < elf.address("__stack_top__") <= 0x38400000
    asm = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf_path)], capture_output=True,
                         text=True, check=True).stdout
    assert "smlad" in asm and "sxtb16" in asm


@needs_tools
def test_bench_firmware_table_for_one_board_with_layers():
    """scripts/bench_firmware.py --boards: the table, each layer's instructions (--profile),
    the summary of instructions per inference, the run checked against TFLite, and on the M4
    the ratio to the MLPerf Tiny leader's cycles."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_firmware.py"),
                           "--boards", "mps2-an505,mps2-an386", "--models", "ad01", "--patch",
                           "none", "--rows", "1", "--profile"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("ad01_int8 ")]
    assert "mps2-an505" in rows[0] and " DSP " in rows[0] and rows[0].rstrip().endswith("yes")
    assert "mps2-an386" in rows[1] and rows[1].rstrip().endswith("yes")
    total, m4 = (int(r.split()[3].replace(",", "")) for r in rows[:2])
    layers = [int(m.group(1).replace(",", "")) for m in
              re.finditer(r"^    op +\d+ \S+ +[\d,]+ MACs +([\d,]+) insn", proc.stdout, re.M)]
    assert len(layers) >= 8 and 0 < sum(layers[:len(layers) // 2]) <= total
    summary = proc.stdout.split("instructions per inference")[1]
    assert "mps2-an505 M33" in summary and "mps2-an386 M4" in summary
    assert re.search(rf"^ad01_int8 +{total:,} +exact +{m4:,} +exact$", summary, re.M), summary
    leader = proc.stdout.split("leader's cycles")[1]
    assert re.search(rf"^ad01_int8 +{m4:,} +486,000 +{m4 / 486000:.3f}", leader, re.M), leader


@pytest.mark.slow
@needs_tools
@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an385", "mps2-an500", "mps2-an505"])
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_on_emulated_boards(name, board):
    check_run(name, board)


@pytest.mark.slow
@needs_tools
def test_layer_by_layer_plan_on_m3():
    check_run("vww_96_int8.tflite", "mps2-an385", rows=1, patch="none")


@needs_tools
def test_cli_run_writes_outputs_and_json(tmp_path):
    model = mlperf_model("ad01_int8.tflite")
    x = np.random.default_rng(3).integers(-128, 128, (2, 640)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("run", model, "--board", "mps2-an385", "--input", tmp_path / "x.npy",
                   "--output", tmp_path / "y.npy", "--json", tmp_path / "r.json", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "bit-exact" in proc.stdout
    y = np.load(tmp_path / "y.npy")
    assert np.array_equal(y, reference_outputs(model.read_bytes(), [x])[0])
    report = json.loads((tmp_path / "r.json").read_text())
    for key in ("instructions", "cycles", "macs", "ram_bytes_measured", "flash_bytes_measured",
                "peak_sram_bytes"):
        assert key in report
    assert report["macs"] == 264192 and report["instructions"] > report["macs"]


@needs_tools
def test_cli_build_writes_platformio_project(tmp_path):
    out = tmp_path / "fw"
    proc = run_cli("build", mlperf_model("ad01_int8.tflite"), "--board", "mps2-an386", "--out", out)
    assert proc.returncode == 0, proc.stderr
    ini = (out / "platformio.ini").read_text()
    assert "board = mps2-an386" in ini and "platform = symlink://" in ini
    assert (out / "lib" / "mcunet_model" / "library.json").exists()
    assert (out / "lib" / "mcunet_model" / "mcunet_model.h").exists()
    assert (out / "src" / "main.c").exists()
    assert (out / ".pio" / "build" / "mps2-an386" / "firmware.elf").exists()


@needs_tools
def test_real_board_project_uses_the_vendor_platform(tmp_path):
    proc = run_cli("build", mlperf_model("kws_ref_model.tflite"), "--board", "nucleo-f411re",
                   "--out", tmp_path / "fw", "--no-build")
    assert proc.returncode == 0, proc.stderr
    files = {str(p.relative_to(tmp_path / "fw")): p.read_text()
             for p in (tmp_path / "fw").rglob("*") if p.is_file()}
    ini = files["platformio.ini"]
    # The vendor platform pinned to a release, as PlatformIO asks of projects.
    assert "platform = platformio/ststm32@19.4.0" in ini and "board = nucleo_f411re" in ini
    assert "framework = arduino" in ini and "upload_protocol = stlink" in ini
    assert "src/port_arduino.cpp" in files and "boards/nucleo_f411re.json" not in files
    # The same folder, rebuilt for an emulated board: the real board's files are gone.
    proc = run_cli("build", mlperf_model("ad01_int8.tflite"), "--board", "mps2-an385",
                   "--out", tmp_path / "fw")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "fw" / "src" / "port_arduino.cpp").exists()
    kernels = {p.name for p in (tmp_path / "fw" / "lib" / "mcunet_model" / "kernels").iterdir()}
    assert not (tmp_path / "fw" / "src" / "port_arduino.cpp").exists()
    assert kernels and not any("conv2d" in k for k in kernels)  # ad01 has no convolution


def test_harness_report_parsing_and_errors():
    text = ("mcunet-begin sp=0x20001000\nmcunet-row 0 cycles=123 stack=96\n"
            "mcunet-out 0 0102\nmcunet-out 0 ff\nmcunet-end\n")
    report = parse_harness(text, 1)
    assert report.raw == [bytes([1, 2, 255])] and report.cycles == [123] and report.stack == [96]
    with pytest.raises(McunetError, match="did not run to the end"):
        parse_harness("mcunet-begin sp=0x0\n", 1)
    with pytest.raises(McunetError, match="stack went past"):
        parse_harness("mcunet-begin sp=0x0\nmcunet-row 0 cycles=0 stack=9 overflow\nmcunet-end\n", 1)


def fake_serial(monkeypatch, chunks: list[bytes]) -> None:
    """pyserial replaced by a port whose reads return `chunks` in turn, then nothing."""
    import sys
    import types

    class Port:
        def __init__(self, *a, **k):
            self.chunks = list(chunks)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def write(self, data):
            pass

        def read(self, n):
            return self.chunks.pop(0) if self.chunks else b""

    monkeypatch.setitem(sys.modules, "serial",
                        types.SimpleNamespace(Serial=Port, SerialException=OSError))


def test_board_that_never_answers(monkeypatch):
    """A serial port that stays silent ends in a clear error after the timeout."""
    from mcunet.boards import serial_port

    fake_serial(monkeypatch, [])
    with pytest.raises(McunetError, match="never answered within 1 s"):
        serial_port.read_harness("/dev/ttyFAKE", timeout=1, start_grace=0)


def test_board_answer_is_cut_to_one_run(monkeypatch):
    """A board that ran twice (a second 'r' arrived while it started) still gives one run's
    report, read through the same path as a real serial port."""
    from mcunet.boards import serial_port

    one_run = (b"mcunet-begin sp=0x20001000\r\nmcunet-row 0 cycles=5 stack=64\r\n"
               b"mcunet-out 0 7f\r\nmcunet-end\r\n")
    second = b"mcunet-begin sp=0x20001000\r\nmcunet-row 0 cycles=5 stack=64\r\nmcunet-out"
    fake_serial(monkeypatch, [b"", one_run + second])
    text = serial_port.read_harness("/dev/ttyFAKE", timeout=5, start_grace=0)
    report = parse_harness(text, 1)
    assert report.raw == [bytes([0x7f])] and report.cycles == [5] and report.stack == [64]


@needs_tools
def test_project_builds_alone_and_runs_as_edited(tmp_path):
    """A `mcunet build` project for an emulated board builds with a plain `pio run` in a
    fresh shell (offline, nothing from mcunet's environment), and `mcunet run --project`
    runs it as the user left it."""
    import subprocess
    import sys

    model = mlperf_model("kws_ref_model.tflite")
    out = tmp_path / "fw"
    x = np.random.default_rng(4).integers(-128, 128, (2, 49, 10, 1)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("build", model, "--board", "mps2-an386", "--out", out, "--no-build")
    assert proc.returncode == 0, proc.stderr
    ini = (out / "platformio.ini").read_text()
    assert "platform = symlink://platform" in ini and "packages_dir = packages" in ini
    assert str(tmp_path) not in ini  # nothing points outside the folder
    home = tmp_path / "home"
    home.mkdir()
    fresh = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home)}
    r = subprocess.run(["pio", "run"], cwd=out, env=fresh, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (out / ".pio" / "build" / "mps2-an386" / "firmware.elf").is_file()
    # New rows for the project, then the user's edit: the harness feeds zeros instead.
    proc = run_cli("run", "--project", out, "--input", tmp_path / "x.npy", "--output",
                   tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "ran 2 rows" in proc.stdout and "bit-exact" in proc.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy"), reference_outputs(model.read_bytes(), [x])[0])
    main = out / "src" / "main.c"
    text = main.read_text()
    copy = "memcpy(mcunet_input(i), src, input_bytes[i]);"
    assert copy in text
    main.write_text(text.replace(copy, "memset(mcunet_input(i), 0, input_bytes[i]);"))
    proc = run_cli("run", "--project", out, "--output", tmp_path / "z.npy", "--json",
                   tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    zeros = reference_outputs(model.read_bytes(), [np.zeros_like(x)])[0]
    assert np.array_equal(np.load(tmp_path / "z.npy"), zeros)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["project"] == str(out) and report["instructions"] > report["macs"]


TWO_MODELS_FIRMWARE = r"""
#include <stdint.h>
#include <string.h>
#include "kws_model.h"
#include "ad_model.h"
#include "rows.h"

void port_write(const char *text);

static uint32_t ad_arena[(AD_ARENA_BYTES + 3) / 4];

static void put(const char *tag, const uint8_t *data, int n)
{
    static const char hex[] = "0123456789abcdef";
    char line[8 + 2 * 64 + 2];
    for (int k = 0; k < n; k += 64) {
        char *p = line;
        for (const char *t = tag; *t; ++t) *p++ = *t;
        for (int j = k; j < n && j < k + 64; ++j) {
            *p++ = hex[data[j] >> 4];
            *p++ = hex[data[j] & 15];
        }
        *p++ = '\n';
        *p = 0;
        port_write(line);
    }
}

int main(void)
{
    if (ad_set_arena(ad_arena, sizeof ad_arena) != 0) return 1;
    for (int r = 0; r < ROWS; ++r) {
        memcpy(kws_input(0), kws_rows[r], KWS_INPUT0_BYTES);
        memcpy(ad_input(0), ad_rows[r], AD_INPUT0_BYTES);
        kws_invoke();
        ad_invoke();
        put("kws ", (const uint8_t *)kws_output(0), KWS_OUTPUT0_BYTES);
        put("ad ", (const uint8_t *)ad_output(0), AD_OUTPUT0_BYTES);
    }
    return 0;
}
"""


@needs_tools
def test_two_named_models_in_one_m4_firmware(tmp_path):
    """kws (its arena in a section of its own) and ad01 (an external arena), compiled with
    different names, link into one firmware for the emulated Cortex-M4 and compute every
    output byte as TFLite's reference kernels do."""
    from mcunet.boards.qemu import run_qemu

    kws, ad = mlperf_model("kws_ref_model.tflite"), mlperf_model("ad01_int8.tflite")
    out = tmp_path / "fw"
    proc = run_cli("build", ad, "--board", "mps2-an386", "--out", out, "--no-build")
    assert proc.returncode == 0, proc.stderr
    for folder in ("src", "lib"):
        shutil.rmtree(out / folder)
    (out / "lib").mkdir()  # a PlatformIO project's lib/, where the libraries go
    for path, name, extra in ((kws, "kws", ["--arena-section", ".bss.kws_arena"]),
                              (ad, "ad", ["--external-arena"])):
        proc = run_cli("compile", path, "--board", "mps2-an386", "--name", name, "--out",
                       out / "lib" / f"{name}_model", *extra)
        assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(9)
    xk = rng.integers(-128, 128, (2, 49, 10, 1)).astype(np.int8)
    xa = rng.integers(-128, 128, (2, 640)).astype(np.int8)

    def c_rows(name, x):
        body = ",\n".join("{" + ", ".join(map(str, row.reshape(-1).tolist())) + "}" for row in x)
        return f"static const int8_t {name}[ROWS][{x[0].size}] = {{\n{body}\n}};\n"

    (out / "src").mkdir()
    (out / "src" / "rows.h").write_text("#define ROWS 2\n" + c_rows("kws_rows", xk) +
                                       c_rows("ad_rows", xa))
    (out / "src" / "main.c").write_text(TWO_MODELS_FIRMWARE)
    from mcunet.boards.toolchain import run_pio
    run_pio(["run"], cwd=out)
    elf = out / ".pio" / "build" / "mps2-an386" / "firmware.elf"
    symbols = __import__("subprocess").run(["arm-none-eabi-nm", str(elf)], capture_output=True,
                                           text=True).stdout
    assert " T kws_invoke" in symbols and " T ad_invoke" in symbols
    run = run_qemu(elf, "mps2-an386", None, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith(("kws ", "ad "))]
    got = {"kws": [], "ad": []}
    for ln in lines:
        tag, data = ln.split(" ", 1)
        got[tag].append(bytes.fromhex(data))
    yk = reference_outputs(kws.read_bytes(), [xk])[0]
    ya = reference_outputs(ad.read_bytes(), [xa])[0]
    assert b"".join(got["kws"]) == yk.tobytes()
    assert b"".join(got["ad"]) == ya.tobytes()


@needs_tools
def test_bench_shapes_runs_a_slice_bit_exact(capsys):
    """scripts/bench_shapes.py on the first network of its corpus: one row on the emulated M4,
    checked against TFLite, with the summary against issue 11's targets."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_shapes", ROOT / "scripts" / "bench_shapes.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--only", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("gen00_"))
    macs, insn, per_mac, exact = row.split()[2:6]
    assert exact == "yes"
    assert float(per_mac) == pytest.approx(int(insn.replace(",", "")) / int(macs.replace(",", "")),
                                           abs=1e-3)
    assert "bit-exact 1 of 1" in out and "median" in out


@pytest.mark.parametrize("profile", [False, True])
def test_model_of_views_only_runs_on_the_board(tmp_path, profile):
    """A RESHAPE alone: NAME_invoke calls no kernel and may need no stack at all, which the
    harness must not take for a stack that ran past its paint (and a profile build has no
    steps to record)."""
    from .modelgen import ModelBuilder

    m = ModelBuilder()
    x = m.input((1, 4, 4, 2), "int8", scale=0.1, zero_point=3)
    shape = m.const(np.array([1, 32], dtype=np.int32))
    y = m.tensor((1, 32), "int8", scale=0.1, zero_point=3)
    m.op("RESHAPE", [x, shape], [y])
    m.output(y)
    path = tmp_path / "reshape.tflite"
    path.write_bytes(m.build())
    model = compile_model(path, patch="none", target="cortex-m4")
    inputs = random_inputs(model.graph, 2, seed=1)
    result = run_on_board(model, get_board("mps2-an386"), inputs, profile=profile)
    assert np.array_equal(result.outputs[0], reference_outputs(path.read_bytes(), inputs)[0])
    assert result.layers == []
    assert result.ram["kernel_stack_bytes"] <= result.ram["kernel_stack_bound_bytes"]

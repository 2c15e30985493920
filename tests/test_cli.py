"""The command line as a user meets it: compile, inspect, plan --json, simulate --check."""
import json
import re
import subprocess

import numpy as np

from mcunet.compiler import compile_model

from .conftest import mlperf_model, run_cli

ALLOWED_INCLUDES = {"stdint.h", "string.h", "mcunet_model.h", "mcunet_kernels.h",
                    "mcunet_weights.h", "mcunet_common.h"}


def test_compile_writes_a_self_contained_c99_library(tmp_path):
    model = mlperf_model("pretrainedResnet_quant.tflite")
    out = tmp_path / "lib"
    r = run_cli("compile", model, "--out", out)
    assert r.returncode == 0, r.stderr
    for name in ("mcunet_model.h", "mcunet_model.c", "mcunet_weights.c", "mcunet_kernels.h",
                 "mcunet_common.h", "report.md"):
        assert (out / name).is_file(), name
    sources = sorted(out.rglob("*.[ch]"))
    kernels = sorted((out / "kernels").glob("*.c"))
    # Only the kernels the model uses: conv (with the residual ADDs fused into it), average
    # pool, fully connected, softmax.
    assert {re.sub(r"_\d+$", "", k.stem) for k in kernels} == {
        "mcunet_conv2d_s8", "mcunet_average_pool_s8", "mcunet_fully_connected_s8",
        "mcunet_softmax_s8"}
    # Each of the three ADDs is fused (a streamed block's top, middle and bottom bands may
    # each have their own kernel).
    fused = {m for k in kernels for m in re.findall(r"residual ADD \(op (\d+)\)", k.read_text())}
    assert fused == {"3", "7", "11"}
    for src in sources:
        text = src.read_text()
        assert set(re.findall(r'#include [<"]([^>"]+)[>"]', text)) <= ALLOWED_INCLUDES, src
        assert not re.search(r"\b(malloc|calloc|realloc|free)\s*\(", text), src
    # The arena in the header is the planned number.
    header = (out / "mcunet_model.h").read_text()
    planned = compile_model(model).peak_sram_bytes
    assert re.search(rf"#define MCUNET_ARENA_BYTES {planned}\b", header)
    # A user's firmware: strict C99, all warnings as errors, no other files needed.
    main = tmp_path / "main.c"
    main.write_text('#include "mcunet_model.h"\n#include <string.h>\n'
                    "int main(void) { memset(mcunet_input(0), 0, MCUNET_INPUT0_BYTES);\n"
                    "  mcunet_invoke(); return ((const int8_t *)mcunet_output(0))[0] == 99; }\n")
    cmd = ["cc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I", str(out),
           str(main), *[str(s) for s in sources if s.suffix == ".c"], "-o", str(tmp_path / "fw")]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert subprocess.run([str(tmp_path / "fw")]).returncode == 0
    assert "peak SRAM" in (out / "report.md").read_text()


def test_plan_json_contract():
    model = mlperf_model("vww_96_int8.tflite")
    r = run_cli("plan", model, "--json", "--patch", "none", "--no-png")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    compiled = compile_model(model, patch="none")
    assert plan["peak_sram_bytes"] == compiled.peak_sram_bytes == compiled.plan.arena_bytes
    assert plan["flash_bytes"] == compiled.flash_bytes
    assert plan["macs"] == 7_489_664
    assert plan["lower_bound_bytes"] <= plan["peak_sram_bytes"]
    assert len(plan["layers"]) == 31
    first = plan["layers"][0]
    assert first["op"] == "CONV_2D" and first["output_shape"] == [1, 48, 48, 8]
    assert first["output_bytes"] == 48 * 48 * 8


def test_inspect_prints_a_table():
    r = run_cli("inspect", mlperf_model("kws_ref_model.tflite"))
    assert r.returncode == 0, r.stderr
    assert "DEPTHWISE_CONV_2D" in r.stdout and "2,656,768" in r.stdout
    assert r.stdout.splitlines()[0].startswith("input 0:")


def test_simulate_writes_outputs_and_checks(tmp_path):
    model = mlperf_model("kws_ref_model.tflite")
    x = np.random.default_rng(3).integers(-128, 128, size=(7, 49, 10, 1)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("simulate", model, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                "--check")
    assert r.returncode == 0, r.stderr
    assert "bit-exact: 7 rows" in r.stdout
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (7, 12) and y.dtype == np.int8


def test_compile_and_plan_do_not_import_tensorflow(tmp_path):
    code = ("import sys; from mcunet.cli import main\n"
            "try:\n    main(['plan', sys.argv[1], '--json'])\nexcept SystemExit: pass\n"
            "try:\n    main(['compile', sys.argv[1], '--out', sys.argv[2]])\nexcept SystemExit: pass\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "print('heavy:', bad)\n")
    r = subprocess.run([__import__("sys").executable, "-c", code,
                        str(mlperf_model("ad01_int8.tflite")), str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout


def test_plan_prints_marks_and_writes_the_figure(tmp_path):
    model = mlperf_model("vww_96_int8.tflite")
    r = run_cli("plan", model, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    auto = compile_model(model)
    spec = auto.patch.spec
    assert f"patch {spec.rows}x{spec.cols}" in r.stdout and "alias" in r.stdout
    assert f"peak SRAM:              {auto.peak_sram_bytes:,} B (no budget)" in r.stdout
    png = tmp_path / "vww_96_int8_memory.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_cli("plan", model, "--json", "--png", tmp_path / "m.png")
    plan = json.loads(r.stdout)
    assert plan["patch"] == str(spec) and 0 < plan["patch_mac_overhead"] <= 0.15
    assert plan["peak_sram_bytes"] == auto.peak_sram_bytes < compile_model(model, patch="none").peak_sram_bytes
    assert (tmp_path / "m.png").is_file() and plan["png"] == str(tmp_path / "m.png")


def test_compile_writes_a_self_contained_html_report(tmp_path):
    r = run_cli("compile", mlperf_model("vww_96_int8.tflite"), "--out", tmp_path / "lib",
                "--patch", "4x4@3")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "lib" / "report.html").read_text()
    assert "data:image/png;base64," in html and "4x4@3" in html
    assert "http://" not in html and "https://" not in html  # nothing outside the file
    assert (tmp_path / "lib" / "memory.png").is_file()


def test_budgets_fail_with_what_is_needed(tmp_path):
    model = mlperf_model("vww_96_int8.tflite")
    need = compile_model(model).peak_sram_bytes
    r = run_cli("compile", model, "--out", tmp_path / "lib", "--sram", "16KB")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"needs {need:,} bytes of SRAM but the budget has 16,384 ({need - 16384:,} over" in r.stderr
    assert not (tmp_path / "lib").exists()
    # With a flash budget, flash counts the library's code for the target (the host's here)
    # beside the weights; the advice for flash is never a smaller input.
    from mcunet.api import compile_unchecked
    with_flash = compile_unchecked(model, flash="100KB")
    total, weights = with_flash.flash_total_bytes, with_flash.flash_bytes
    # (the weights: VWW's filters and biases, about 241 KB, the requantisation constants, and
    # zero bytes that pad a filter to whole words; the exact count moves with the kernels' layouts)
    assert abs(weights - 240_964) < 240_964 // 100 and total > weights
    assert compile_model(model).flash_total_bytes is None
    r = run_cli("plan", model, "--flash", "100KB", "--no-png")
    assert r.returncode == 2
    assert f"needs {total:,} bytes of flash ({weights:,} of weights and constants" in r.stderr
    assert f"({total - 102400:,} over)" in r.stderr
    assert "resolution" not in r.stderr and "--patch" not in r.stderr
    r = run_cli("plan", model, "--sram", "lots", "--no-png")
    assert r.returncode == 2 and "cannot read 'lots' as a size" in r.stderr
    r = run_cli("plan", model, "--sram", "64KB", "--flash", "1MB", "--no-png")
    assert r.returncode == 0, r.stderr
    assert f"(weights and constants {weights:,} + code " in r.stdout  # layer by layer here
    # Without one, the host's code is not measured (it compiles every kernel), and says so.
    r = run_cli("plan", model, "--no-png")
    assert r.returncode == 0, r.stderr
    assert f"{weights:,} B (no budget) (weights and constants; code not measured on the host" in r.stdout


def test_a_board_gives_the_budget_and_adds_the_kernels_stack():
    model = mlperf_model("kws_ref_model.tflite")
    r = run_cli("plan", model, "--board", "mps2-an386", "--json", "--no-png")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["stack_bytes"] > 0
    assert plan["peak_sram_bytes"] == plan["arena_bytes"] + plan["stack_bytes"]
    # --sram overrides the board's SRAM (the stack still counts); the error names the budget.
    r = run_cli("plan", model, "--board", "mps2-an386", "--sram", "4KB", "--no-png")
    assert r.returncode == 2
    assert (f"needs {plan['peak_sram_bytes']:,} bytes of SRAM (arena {plan['arena_bytes']:,} + "
            f"stack {plan['stack_bytes']}) but the budget has 4,096") in r.stderr


def test_plan_over_budget_still_prints_the_plan(tmp_path):
    """A script can find the bottleneck: the best plan, "fits": false, headroom below zero,
    exit 2 with the error on stderr."""
    model = mlperf_model("vww_96_int8.tflite")
    r = run_cli("plan", model, "--json", "--sram", "20KB", "--patch", "none", "--no-png")
    assert r.returncode == 2 and r.stderr.startswith("error: the model does not fit")
    plan = json.loads(r.stdout)
    assert plan["fits"] is False and plan["sram_budget_bytes"] == 20480
    assert plan["sram_headroom_bytes"] == 20480 - plan["peak_sram_bytes"] < 0
    assert max(row["live_bytes"] for row in plan["layers"]) == plan["arena_bytes"]
    # Advice that helps: patches were off, and with them the peak drops (by this much).
    auto = compile_model(model).peak_sram_bytes
    assert f"--patch auto (peak {auto:,} bytes)" in r.stderr
    assert "fewer or narrower layers" not in r.stderr  # SRAM, not flash, is over
    # With patches already chosen freely, --patch auto is not proposed again.
    r = run_cli("plan", model, "--sram", "20KB", "--no-png")
    assert r.returncode == 2 and "--patch auto" not in r.stderr
    assert "peak SRAM:" in r.stdout and "over" in r.stdout  # the table was printed first


def test_reports_name_the_target_and_show_headroom(tmp_path):
    model = mlperf_model("kws_ref_model.tflite")
    r = run_cli("plan", model, "--board", "nucleo-f411re", "--no-png")
    assert r.returncode == 0, r.stderr
    compiled = __import__("mcunet").compile(model, board="nucleo-f411re")
    free = 128 * 1024 - 16 * 1024
    used = compiled.peak_sram_bytes
    assert f"{used:,} of {free:,} B ({100 * used / free:.0f}%), {free - used:,} B headroom" in r.stdout
    assert "plan for cortex-m4 (board nucleo-f411re)" in r.stdout
    flash = compiled.flash_total_bytes
    assert f"flash:                  {flash:,} of {512 * 1024 - 64 * 1024:,} B" in r.stdout
    r = run_cli("compile", model, "--board", "nucleo-f411re", "--out", tmp_path / "lib")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "lib" / "report.html").read_text()
    assert "cortex-m4 (board nucleo-f411re)" in html and "headroom" in html
    assert "max-width:100%" in html and "scale 0.5847" in html  # I/O quantisation
    md = (tmp_path / "lib" / "report.md").read_text()
    assert "on cortex-m4 (board nucleo-f411re)" in md and f"{used:,} of {free:,} B" in md

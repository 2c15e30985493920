"""Board descriptors, `mcunet boards`, --board budgets, and the offline PlatformIO set-up."""
from __future__ import annotations

import json

import pytest

from mcunet.boards import BOARDS, get_board
from mcunet.boards.toolchain import provision_tool_scons, require
from mcunet.errors import McunetError

from .conftest import mlperf_model, run_cli

ISSUE_BOARDS = ["mps2-an386", "mps2-an500", "mps2-an385", "mps2-an505", "stm32f746g-disco",
                "nucleo-f411re", "nucleo-h743zi", "nano33ble", "pico"]


def test_registry_has_the_issue_boards():
    for name in ISSUE_BOARDS:
        b = get_board(name)
        assert b.sram_bytes > 0 and b.flash_bytes > 0 and b.clock_hz > 0
    assert get_board("mps2-an386").dsp and get_board("mps2-an500").dsp
    assert get_board("mps2-an505").dsp and get_board("mps2-an505").core == "cortex-m33"
    assert not get_board("mps2-an385").dsp and not get_board("pico").dsp
    assert get_board("stm32f746g-disco").sram_total_bytes == 320 * 1024
    assert all(b.qemu_machine == b.name for b in BOARDS.values() if b.emulated)
    assert {b.name for b in BOARDS.values() if b.emulated} == {"mps2-an386", "mps2-an500",
                                                              "mps2-an385", "mps2-an505"}


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(McunetError, match="unknown board 'uno'.*mps2-an386.*pico"):
        get_board("uno")
    proc = run_cli("plan", mlperf_model("ad01_int8.tflite"), "--board", "uno", "--no-png")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown board 'uno'")
    assert "Traceback" not in proc.stderr


def test_boards_command_table_and_json():
    proc = run_cli("boards")
    assert proc.returncode == 0
    for name in ISSUE_BOARDS:
        assert name in proc.stdout
    listed = json.loads(run_cli("boards", "--json").stdout)
    assert [b["name"] for b in listed] == list(BOARDS)
    assert listed[0]["platformio"]["platform"] == "mcunet"


def test_plan_with_board_includes_kernel_stack_and_checks_budget():
    proc = run_cli("plan", mlperf_model("kws_ref_model.tflite"), "--board", "mps2-an386",
                   "--json", "--no-png")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["stack_bytes"] > 0
    assert plan["peak_sram_bytes"] == plan["arena_bytes"] + plan["stack_bytes"]
    # A budget that is too small says by how much.
    proc = run_cli("plan", mlperf_model("vww_96_int8.tflite"), "--board", "nucleo-f411re",
                   "--sram", "20KB", "--no-png")
    assert proc.returncode == 2 and "over" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_tools_say_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(McunetError, match="apt-get install gcc-arm-none-eabi"):
        require("arm-none-eabi-gcc")
    with pytest.raises(McunetError, match="apt-get install qemu-system-arm"):
        require("qemu-system-arm")


def test_tool_scons_is_provisioned_from_pypi_scons(tmp_path):
    pkg = provision_tool_scons(tmp_path)
    meta = json.loads((pkg / ".piopm").read_text())
    assert meta["name"] == "tool-scons" and meta["type"] == "tool"
    assert (pkg / "scons.py").exists() and (pkg / "SCons" / "__init__.py").exists()
    assert provision_tool_scons(tmp_path) == pkg  # idempotent

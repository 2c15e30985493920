#!/usr/bin/env python3
"""Firmware benchmark on emulated Cortex-M boards (QEMU): for each MLPerf Tiny model and
board, executed instructions per inference, MACs, instructions per MAC, flash (code vs
weights), RAM measured on the board vs planned, portable vs DSP kernels; outputs checked
bit-exact against TFLite's reference kernels on every row. On the M4, the ratio of our
instructions to the MLPerf Tiny leader's cycles (LEADER_M4_CYCLES, cited below).

    python scripts/bench_firmware.py [--boards mps2-an386,mps2-an385] [--models kws,vww]
                                     [--patch auto] [--profile]
    python scripts/bench_firmware.py --board mps2-an505 --patch none

--board is --boards with one board (mps2-an386 M4, mps2-an500 M7, mps2-an385 M3, mps2-an505
M33). --profile adds per-layer instructions (a build with a mark after every op). The table
ends with the instructions per inference of each model on each board, side by side."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODELS = ROOT.parent / "shared" / "models" / "mlperf-tiny"
NAMES = ["vww_96_int8", "kws_ref_model", "pretrainedResnet_quant", "ad01_int8"]
CONV_MODELS = NAMES[:3]
TARGET_INSN_PER_MAC = 2.0  # on the Cortex-M4, for the conv models
# The MLPerf Tiny leader on a Cortex-M4, in cycles (published latency x clock; the same in
# ../shared/anchors.md): ST X-CUBE-AI 9.0 on NUCLEO-L4R5ZI at 120 MHz, v1.2 closed division
# (VWW 88.93 ms, KWS 43.19 ms, IC 165.13 ms); AD: Plumerai, v1.1, same board, 4.05 ms. A
# Cortex-M4 issues at most one instruction per cycle, so instructions executed on the emulated
# M4 are a lower bound on our cycles: below the leader's cycles is the bar.
LEADER_M4_CYCLES = {"vww_96_int8": 10_671_600, "kws_ref_model": 5_182_800,
                    "pretrainedResnet_quant": 19_815_600, "ad01_int8": 486_000}
TARGET_VS_LEADER = 0.80  # issue 11: at most 0.8 of the leader's cycles on every model


def run_checked(path: Path, board, patch: str, rows: int, seed: int = 1,
                profile: bool = False, choices=None):
    """Compile a model for the board's core and its free flash (the convolutions' filters as
    int16 where it has room, as `mcunet run --board` does), run `rows` random rows on the board
    and compare every output byte with TFLite's reference kernels: (the compiled model, the
    run, bit-exact?). choices: mcunet.tune.Choices (default: the tune cache, else the rule)."""
    from mcunet.boards.firmware import run_on_board
    from mcunet.compiler import compile_model
    from mcunet.host import random_inputs
    from mcunet.reference import reference_outputs

    model = compile_model(path, patch=patch, target=board.target, choices=choices,
                          flash_budget=board.flash_bytes)
    inputs = random_inputs(model.graph, rows, seed=seed)
    r = run_on_board(model, board, inputs, profile=profile)
    exact = all(np.array_equal(a, b) for a, b in
                zip(r.outputs, reference_outputs(Path(path).read_bytes(), inputs)))
    return model, r, exact


def main() -> int:
    from mcunet.boards import get_board

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", "--board", default="mps2-an386,mps2-an385")
    ap.add_argument("--models", default=",".join(NAMES))
    ap.add_argument("--patch", default="auto")
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    header = (f"{'model':<24} {'board':<11} {'path':<8} {'instructions':>12} {'MACs':>11} "
              f"{'insn/MAC':>8} {'code B':>8} {'weights B':>10} {'RAM meas.':>10} "
              f"{'= arena':>8} {'+ stack':>7} {'+ harness':>9} {'planned':>8} {'exact':>5}")
    print(header)
    print("-" * len(header))
    insn = {}  # (model, DSP kernels?) -> (board, instructions per MAC), M4 first
    differ = []  # (model, board) whose outputs were not TFLite's
    per_board: dict[str, dict[str, tuple[int, bool]]] = {}  # board -> model -> (insn, exact)
    for board_name in args.boards.split(","):
        board = get_board(board_name)
        for name in args.models.split(","):
            matches = [n for n in NAMES if n.startswith(name)]
            if not matches:
                sys.exit(f"unknown model {name!r}; the models are {', '.join(NAMES)}")
            name = matches[0]
            path = MODELS / f"{name}.tflite"
            _, r, exact = run_checked(path, board, args.patch, args.rows, profile=args.profile)
            ram = r.ram
            harness = ram["harness_static_bytes"] + ram["harness_stack_bytes"]
            print(f"{name:<24} {board.name:<11} {'DSP' if r.dsp else 'portable':<8} "
                  f"{r.instructions:>12,} {r.macs:>11,} {r.instructions_per_mac or 0:>8.3f} "
                  f"{r.flash['code_and_runtime_bytes']:>8,} {r.flash['weights_bytes']:>10,} "
                  f"{r.ram_bytes_measured:>10,} {ram['arena_bytes']:>8,} "
                  f"{ram['kernel_stack_bytes']:>7,} {harness:>9,} {r.peak_sram_bytes:>8,} "
                  f"{'yes' if exact else 'NO':>5}", flush=True)
            if not exact:
                differ.append(f"{name} on {board.name}")
            per_board.setdefault(board.name, {})[name] = (r.instructions, exact)
            if board.core == "cortex-m4" or (name, r.dsp) not in insn:
                insn[(name, r.dsp)] = (board.name, r.instructions_per_mac)
            for layer in r.layers:  # profile builds: one span per traced step
                macs, n = layer["macs"], layer["instructions"]
                per = f"{n / macs:6.2f}" if macs else "      "
                print(f"    op {layer['index']:3d} {layer['kernel']:34s} {macs:>10,} MACs "
                      f"{n:>11,} insn {per}")
    print(f"\ninstructions per inference (patch {args.patch}; exact: outputs equal TFLite's "
          "reference kernels on every row)")
    boards = list(per_board)
    cores = {b: get_board(b).core.replace("cortex-", "").upper() for b in boards}
    print(f"{'model':<24} " + " ".join(f"{b + ' ' + cores[b]:>22}" for b in boards))
    for name in NAMES:
        if any(name in per_board[b] for b in boards):
            cells = []
            for b in boards:
                n, exact = per_board[b].get(name, (None, None))
                cells.append(f"{'-':>22}" if n is None else
                             f"{n:>15,} {'exact' if exact else 'DIFFER':>6}")
            print(f"{name:<24} " + " ".join(cells))
    m4 = [b for b in boards if get_board(b).core == "cortex-m4"]
    if m4:
        print(f"\nagainst the MLPerf Tiny leader's cycles on a Cortex-M4 ({m4[0]}; target "
              f"<= {TARGET_VS_LEADER:.2f})")
        print(f"{'model':<24} {'instructions':>12} {'leader cycles':>13} {'ratio':>6}")
        for name in NAMES:
            if name in per_board[m4[0]]:
                n, exact = per_board[m4[0]][name]
                ratio = n / LEADER_M4_CYCLES[name]
                print(f"{name:<24} {n:>12,} {LEADER_M4_CYCLES[name]:>13,} {ratio:>6.3f}"
                      f"{'' if ratio <= TARGET_VS_LEADER else '  over the target'}"
                      f"{'' if exact else '  (outputs DIFFER)'}")
    print()
    for name in NAMES:
        dsp, portable = insn.get((name, True)), insn.get((name, False))
        if dsp and portable:
            target = ("" if name not in CONV_MODELS or get_board(dsp[0]).core != "cortex-m4" else
                      f"; {'within' if dsp[1] <= TARGET_INSN_PER_MAC else 'OVER'} the M4 target "
                      f"of {TARGET_INSN_PER_MAC}")
            print(f"{name}: {dsp[1]:.3f} instructions/MAC with the DSP kernels ({dsp[0]}), "
                  f"{portable[1]:.3f} with the portable ones ({portable[0]}): "
                  f"{portable[1] / dsp[1]:.2f}x{target}")
    print("\nRAM meas. = static RAM from the ELF + stack high-water mark (painted): the arena "
          "(equal to the plan), the kernels' stack (planned: -fstack-usage bound) and the "
          "harness (its buffers and frames). planned = peak_sram_bytes = arena + stack bound.")
    if differ:
        print(f"outputs differ from TFLite's reference kernels: {', '.join(differ)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

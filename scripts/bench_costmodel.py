#!/usr/bin/env python3
"""The cost model (mcunet/costmodel.py) against instructions counted on the emulated boards,
on the MLPerf Tiny models (which it was not fitted on): per layer and for the whole model,
with the predicted flash beside the measured one.

For every model and board, a profile build runs 2 random rows under QEMU; each span between
two trace marks (one layer, or a patch stage's patches) is compared with the estimate.
Targets: the median per-layer error within 15%, the whole model within 10%; flash_total_bytes
within 3% of the library's bytes in the linked image. Exit 1 when one is missed.

    python scripts/bench_costmodel.py [--boards mps2-an386,mps2-an385] [--models kws,vww]
                                      [--patch none] [--layers]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODELS = ROOT.parent / "shared" / "models" / "mlperf-tiny"
NAMES = ["vww_96_int8", "kws_ref_model", "pretrainedResnet_quant", "ad01_int8"]
LAYER_TARGET, MODEL_TARGET, FLASH_TARGET = 0.15, 0.10, 0.03


def main() -> int:
    import mcunet
    from mcunet.boards import get_board
    from mcunet.boards.firmware import run_on_board
    from mcunet.host import random_inputs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="mps2-an386,mps2-an385")
    ap.add_argument("--models", default=",".join(NAMES))
    ap.add_argument("--patch", default="auto")
    ap.add_argument("--layers", action="store_true", help="print every layer")
    args = ap.parse_args()
    header = (f"{'model':<24} {'board':<11} {'layers':>6} {'median err':>10} {'worst':>7} "
              f"{'measured insn':>13} {'estimated':>11} {'ratio':>6} {'flash meas.':>11} "
              f"{'predicted':>10} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    missed = []
    for board_name in args.boards.split(","):
        board = get_board(board_name)
        for name in args.models.split(","):
            name = next((n for n in NAMES if n.startswith(name)), name)
            path = MODELS / f"{name}.tflite"
            model = mcunet.compile(path, board=board.name, patch=args.patch)
            r = run_on_board(model, board, random_inputs(model.graph, 2, seed=1), profile=True)
            single = [s for s in r.layers if s["steps"] == 1 and s["estimated"] is not None
                      and s["instructions"] > 0]
            errors = [abs(s["estimated"] / s["instructions"] - 1) for s in single]
            median = float(np.median(errors)) if errors else float("nan")
            estimated = sum(s["estimated"] or 0 for s in r.layers)
            measured = sum(s["instructions"] for s in r.layers)
            ratio = estimated / measured
            flash = r.flash_total_bytes / r.flash_library_bytes_measured
            print(f"{name:<24} {board.name:<11} {len(single):>6} {100 * median:>9.1f}% "
                  f"{100 * max(errors):>6.1f}% {measured:>13,} {estimated:>11,} {ratio:>6.3f} "
                  f"{r.flash_library_bytes_measured:>11,} {r.flash_total_bytes:>10,} {flash:>6.3f}",
                  flush=True)
            if args.layers:
                for s in r.layers:
                    est = s["estimated"]
                    print(f"    op {s['index']:3d} {s['kernel']:32s} x{s['steps']:<3} "
                          f"{s['instructions']:>11,} est {est if est is not None else '-':>11,} "
                          + (f"{est / s['instructions']:.3f}" if est and s["instructions"] else ""))
            if median > LAYER_TARGET:
                missed.append(f"{name} on {board.name}: per-layer median {100 * median:.1f}%")
            if abs(ratio - 1) > MODEL_TARGET:
                missed.append(f"{name} on {board.name}: whole model {100 * (ratio - 1):+.1f}%")
            if abs(flash - 1) > FLASH_TARGET:
                missed.append(f"{name} on {board.name}: flash {100 * (flash - 1):+.1f}%")
    print(f"\ntargets: per-layer median within {100 * LAYER_TARGET:.0f}%, whole model within "
          f"{100 * MODEL_TARGET:.0f}%, flash_total_bytes within {100 * FLASH_TARGET:.0f}% of "
          "the library's bytes in the linked image")
    if missed:
        print("missed: " + "; ".join(missed))
        return 1
    print("all met")
    return 0


if __name__ == "__main__":
    sys.exit(main())

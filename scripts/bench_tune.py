#!/usr/bin/env python3
"""`--tune` on the emulated Cortex-M4: instructions with the registry's rule and with the
measured choices, how often the rule and the fitted cost model agree with the measurement,
the time a tune takes and the time a second compile takes (from the cache).

    python scripts/bench_tune.py [--board mps2-an386] [--corpus N] [models...]

Models: the four MLPerf Tiny models and the first N networks of bench_shapes' corpus (default
8: generated MBConv networks with 3x3/5x5/7x7 blocks and odd widths). The tune cache is a
fresh folder of this run, so every tune measures from nothing. Every run compares its outputs
with TFLite's reference kernels byte for byte.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", default="mps2-an386")
    ap.add_argument("--corpus", type=int, default=8, help="networks of bench_shapes' corpus")
    ap.add_argument("models", nargs="*", type=Path)
    args = ap.parse_args(argv)
    os.environ["MCUNET_CACHE"] = tempfile.mkdtemp(prefix="mcunet-bench-tune-")

    from bench_firmware import MODELS, NAMES, run_checked
    from bench_shapes import generated_networks
    from mcunet.boards import get_board
    from mcunet.boards.tune import tune_graph
    from mcunet.codegen.library import LibraryOptions
    from mcunet.compiler import compile_model, load_graph
    from mcunet.tune import Choices

    board = get_board(args.board)
    paths = args.models or ([MODELS / f"{n}.tflite" for n in NAMES] +
                            generated_networks(Path(tempfile.mkdtemp()))[:args.corpus])
    print(f"{len(paths)} models on {board.name} ({board.core}), --patch none")
    print(f"{'model':<24} {'rule insn':>12} {'tuned insn':>12} {'ratio':>6} {'layers':>6} "
          f"{'rule ok':>7} {'model ok':>8} {'tune s':>6} {'again s':>7} {'exact':>5}")
    totals = {"layers": 0, "rule": 0, "estimated": 0}
    all_exact = True
    for path in paths:
        _, before, exact_before = run_checked(path, board, "none", rows=1, seed=3,
                                              choices=Choices())
        start = time.perf_counter()
        report = tune_graph(load_graph(path), board.core, LibraryOptions())
        tune_s = time.perf_counter() - start
        start = time.perf_counter()
        compile_model(path, patch="none", target=board.target)
        again_s = time.perf_counter() - start
        _, after, exact_after = run_checked(path, board, "none", rows=1, seed=3)
        exact = exact_before and exact_after
        all_exact &= exact
        n = len(report.layers)
        totals["layers"] += n
        totals["rule"] += report.agreed("rule")
        totals["estimated"] += report.agreed("estimated")
        print(f"{path.stem:<24} {before.instructions:>12,} {after.instructions:>12,} "
              f"{after.instructions / before.instructions:>6.3f} {n:>6} "
              f"{report.agreed('rule'):>7} {report.agreed('estimated'):>8} {tune_s:>6.1f} "
              f"{again_s:>7.2f} {'yes' if exact else 'NO':>5}", flush=True)
    n = totals["layers"] or 1
    print(f"\nover {totals['layers']} tuned layers: the registry's rule picked the measured best "
          f"on {totals['rule']} ({100 * totals['rule'] / n:.0f}%), the fitted cost model on "
          f"{totals['estimated']} ({100 * totals['estimated'] / n:.0f}%)")
    print("ratio = tuned / rule instructions per inference; 'again s' = a compile after the "
          "tune (the choices from the cache)")
    return 0 if all_exact else 1


if __name__ == "__main__":
    sys.exit(main())

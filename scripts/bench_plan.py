#!/usr/bin/env python3
"""How long `mcunet plan` takes, per model and against the number of ops.

usage:
    python scripts/bench_plan.py                   # benchmark models + depth-scaled networks
    python scripts/bench_plan.py a.tflite ...      # any int8 models
    python scripts/bench_plan.py --no-zoo --blocks 4,8,16,32,64

Each figure is the wall-clock time of one `python -m mcunet plan MODEL` process, as a user
runs it (imports, reading, the placement search, the table, the figure), best of --repeats:

  host s        `mcunet plan MODEL` (host target, the figure written)
  board cold s  `mcunet plan MODEL --board mps2-an386` with an empty cache: includes Arm GCC
                compiling every kernel of the library once for its stack bound and code bytes
                (mcunet.boards.stack), which later plans of the same library read back
  board warm s  the same again, the footprint cached
  plan s        the placement search alone, in this process: mcunet.api.compile_unchecked
                (reading, lowering, stage search, arena planning; no C rendered)

The depth-scaled networks are MBConv networks of 3x3/5x5/7x7 blocks, expansions 3-6 and
channel counts that are not multiples of 4 (tests/netgen.py), with B blocks in each of four
stages: 16 B + 2 ops (a block is 3 convs and, past each stage's first, its residual ADD). Under the table: plan seconds per op for each of them, and the ratio of
the largest to the smallest of those (about 1 when the search grows linearly with the ops).
Target (issue 10): every `mcunet plan` under 2 s (the ratio column is host s / 2 s).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

TARGET_S = 2.0
BOARD = "mps2-an386"


def depth_scaled(blocks: int, out: Path) -> Path:
    """An MBConv network with `blocks` blocks per stage: 16 blocks + 2 ops."""
    from tests.netgen import MBConvNet

    net = MBConvNet(64, 14, ((3, 3, 14, blocks, 1), (6, 5, 26, blocks, 2),
                             (4, 7, 42, blocks, 2), (5, 3, 66, blocks, 2)), 130, seed=blocks)
    path = out / f"depth_{blocks}.tflite"
    path.write_bytes(net.build(f"depth_{blocks}"))
    return path


def plan_seconds(model: Path, cache: Path, repeats: int, *args: str) -> float:
    """Best wall-clock seconds of `mcunet plan MODEL ARGS` (exit 0 or 2: over a budget still
    plans); the figure goes to a temporary folder."""
    env = {**os.environ, "MCUNET_CACHE": str(cache)}
    best = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "mcunet", "plan", str(model), *args,
                                "--png", str(Path(tmp) / "f.png")],
                               capture_output=True, text=True, env=env)
            dt = time.perf_counter() - t
        if r.returncode not in (0, 2):
            raise SystemExit(f"mcunet plan {model} {' '.join(args)} failed:\n{r.stderr[-2000:]}")
        best = dt if best is None else min(best, dt)
    return best


def search_seconds(model: Path, repeats: int) -> tuple[float, int]:
    from mcunet import api

    best, ops = None, 0
    for _ in range(repeats):
        t = time.perf_counter()
        compiled = api.compile_unchecked(model)
        dt = time.perf_counter() - t
        ops = len(compiled.graph.ops)
        best = dt if best is None else min(best, dt)
    return best, ops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--no-zoo", action="store_true", help="without the benchmark models")
    ap.add_argument("--blocks", default="2,4,8,16", help="blocks per stage of the depth-scaled "
                    "networks (default 2,4,8,16: 34 to 258 ops; '' for none)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mcunet-bench-plan-"))
    models = list(args.models)
    if not models and not args.no_zoo:
        from bench_compile import benchmark_models
        models = benchmark_models()
    scaled = [depth_scaled(int(b), work) for b in args.blocks.split(",") if b]
    models += scaled

    from mcunet import api
    api.compile_unchecked(scaled[0] if scaled else models[0])  # imports and caches warm

    print(f"mcunet plan, wall-clock seconds per process, best of {args.repeats} "
          f"({os.cpu_count()} CPUs); board {BOARD}")
    print(f"{'model':<28} {'ops':>5} {'plan s':>7} {'host s':>7} {'board cold s':>13} "
          f"{'board warm s':>13} {'host/2s':>8}")
    rows, worst = [], 0.0
    for m in models:
        search, ops = search_seconds(m, args.repeats)
        host = plan_seconds(m, work / "cache-host", args.repeats)
        cold_cache = Path(tempfile.mkdtemp(dir=work))
        cold = plan_seconds(m, cold_cache, 1, "--board", BOARD)
        warm = plan_seconds(m, cold_cache, args.repeats, "--board", BOARD)
        worst = max(worst, host)
        rows.append((m, ops, search))
        print(f"{m.stem:<28} {ops:>5} {search:>7.2f} {host:>7.2f} {cold:>13.2f} {warm:>13.2f} "
              f"{host / TARGET_S:>8.2f}")
    per_op = [(ops, s / ops) for m, ops, s in rows if m in scaled]
    if per_op:
        print("\nplacement search per op, depth-scaled networks: " +
              ", ".join(f"{ops} ops {1e3 * x:.1f} ms" for ops, x in per_op))
        xs = [x for _, x in per_op]
        print(f"largest / smallest per-op time: {max(xs) / min(xs):.2f} (1.00: linear)")
    print(f"slowest host plan: {worst:.2f} s; target {TARGET_S:.0f} s: "
          f"{'met' if worst <= TARGET_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

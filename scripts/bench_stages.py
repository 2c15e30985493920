#!/usr/bin/env python3
"""What the patch-based and streamed stages cost in instructions: each model compiled layer by
layer and with `--patch auto` (the smallest peak within --max-overhead, no budget) for the
emulated Cortex-M4 (mps2-an386, DSP kernels), both run under QEMU with exact instruction
counting, both outputs checked byte for byte against TFLite's reference kernels.

    python scripts/bench_stages.py                  # MLPerf Tiny, the Keras MobileNets, generated
    python scripts/bench_stages.py a.tflite --board mps2-an500 --no-keras

Columns: peak SRAM of both plans (arena + kernel stack, as planned), instructions per
inference of both, the measured instruction overhead of the stages, the extra instructions the
planner estimated for them (mcunet.work, with its margin: what --max-overhead bounds), their
recomputed MACs and their extra kernel calls."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_compile  # noqa: E402  (the MLPerf Tiny corpus)


def measure(path: Path, board, max_overhead: float, rows: int = 2) -> dict:
    from mcunet.boards.firmware import run_on_board
    from mcunet.compiler import compile_model
    from mcunet.host import random_inputs
    from mcunet.reference import reference_outputs

    row = {"model": path.stem}
    expected = None
    for key, patch in (("none", "none"), ("auto", "auto")):
        model = compile_model(path, patch=patch, target=board.target, max_overhead=max_overhead)
        inputs = random_inputs(model.graph, rows, seed=1)
        if expected is None:
            expected = reference_outputs(path.read_bytes(), inputs)
        r = run_on_board(model, board, inputs)
        row[f"{key}_exact"] = all(np.array_equal(a, b) for a, b in zip(r.outputs, expected))
        row[f"{key}_instructions"] = r.instructions
        row[f"{key}_peak"] = r.peak_sram_bytes
        if key == "auto":
            row.update(schedule=model.schedule, estimate=model.overhead,
                       mac_overhead=model.mac_overhead, extra_calls=model.extra_calls)
    row["measured"] = row["auto_instructions"] / row["none_instructions"] - 1
    return row


def table(rows: list[dict]) -> str:
    headers = ["model", "peak none", "peak auto", "insn none", "insn auto", "+insn", "+work est.",
               "+MACs", "+calls", "exact", "stages"]
    lines = [headers]
    for r in rows:
        lines.append([r["model"], f"{r['none_peak']:,}", f"{r['auto_peak']:,}",
                      f"{r['none_instructions']:,}", f"{r['auto_instructions']:,}",
                      f"{100 * r['measured']:.1f}%", f"{100 * r['estimate']:.1f}%",
                      f"{100 * r['mac_overhead']:.1f}%", f"{r['extra_calls']:,}",
                      "yes" if r["none_exact"] and r["auto_exact"] else "NO", r["schedule"]])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(headers))]
    out = []
    for n, line in enumerate(lines):
        out.append(" | ".join(str(c).ljust(w) if i in (0, 10) else str(c).rjust(w)
                              for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            out.append("-|-".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from mcunet.boards import get_board

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--board", default="mps2-an386")
    ap.add_argument("--max-overhead", type=float, default=15.0, help="percent")
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--no-generated", action="store_true")
    args = ap.parse_args(argv)
    models = list(args.models) or bench_compile.benchmark_models(not args.no_keras,
                                                                 not args.no_generated)
    board = get_board(args.board)
    rows = []
    for path in models:
        print(f"running {Path(path).name} ...", file=sys.stderr, flush=True)
        rows.append(measure(Path(path), board, args.max_overhead / 100))
    print(table(rows))
    bad = [r["model"] for r in rows if not (r["none_exact"] and r["auto_exact"])]
    over = [r["model"] for r in rows if r["measured"] > args.max_overhead / 100]
    print()
    print(f"instruction overhead of the stages: at most {100 * max(r['measured'] for r in rows):.1f}% "
          f"({'all within' if not over else 'OVER: ' + ', '.join(over) + ' over'} the "
          f"{args.max_overhead:g}% bound)")
    if bad:
        print(f"outputs differ from TFLite's reference kernels: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How many architectures of the search space fit a small SRAM budget, layer by layer and with
the compiler's stages (`--patch auto`), now and with an earlier mcunet.

Samples architectures of `mcunet search`'s default space (every width and resolution it
offers), builds each one's int8 graph as the search does (mcunet.search.graph, no training,
no TensorFlow) and plans it with the compiler the search uses; an architecture fits a budget
when its peak SRAM is at most the budget (flash and latency are left out: the stages change
only SRAM and MACs). With --baseline DIR (a source tree of an earlier mcunet, e.g. from
`git archive`), the same sample is planned by that tree's compiler in a child process, so the
table shows how many more candidates the stages let fit.

    git archive 7bb0ccc | tar -x -C /tmp/mcunet-before
    python scripts/bench_search_fits.py --samples 200 --baseline /tmp/mcunet-before
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = (8 * 1024, 16 * 1024)


def sample(n: int, seed: int) -> list[dict]:
    from mcunet.search.space import SearchSpace

    space = SearchSpace()
    rng = random.Random(seed)
    return [space.sample(rng).to_dict() for _ in range(n)]


def plan(archs: list[dict]) -> list[dict]:
    """Peak SRAM layer by layer and with --patch auto, for each architecture (dicts in and
    out, so an older mcunet can run this too)."""
    from mcunet.compiler import compile_graph
    from mcunet.search.graph import build_graph
    from mcunet.search.space import Arch, SearchSpace

    space = SearchSpace()
    result = []
    for d in archs:
        graph = build_graph(space, Arch.from_dict(d))
        t0 = time.perf_counter()
        none = compile_graph(graph, patch="none")
        auto = compile_graph(graph, patch="auto")
        spent = time.perf_counter() - t0
        stage = getattr(auto, "schedule", None) or (str(auto.patch.spec) if auto.patch else "none")
        result.append({"none": none.peak_sram_bytes, "auto": auto.peak_sram_bytes,
                       "stages": stage, "seconds": round(spent, 3)})
    return result


def counts(rows: list[dict], key: str) -> list[int]:
    return [sum(r[key] <= b for r in rows) for b in BUDGETS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", type=Path, default=None,
                    help="source tree of an earlier mcunet to plan the same sample with")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:  # plan the sample in the file with whatever mcunet imports
        archs = json.loads(args.worker.read_text())
        print(json.dumps(plan(archs)))
        return 0
    archs = sample(args.samples, args.seed)
    t0 = time.perf_counter()
    after = plan(archs)
    after_s = time.perf_counter() - t0
    columns = [("layer by layer", counts(after, "none")), ("auto, this tree", counts(after, "auto"))]
    before = None
    if args.baseline is not None:
        work = Path(os.environ.get("TMPDIR", "/tmp")) / f"search_fits_{os.getpid()}.json"
        work.write_text(json.dumps(archs))
        env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker",
                               str(work)], capture_output=True, text=True, env=env,
                              cwd=args.baseline)
        before_s = time.perf_counter() - t0
        work.unlink()
        if proc.returncode != 0:
            sys.exit(f"the baseline failed: {proc.stderr.strip().splitlines()[-1:]}")
        before = json.loads(proc.stdout.strip().splitlines()[-1])
        columns.insert(1, (f"auto, {args.baseline.name}", counts(before, "auto")))
    print(f"{len(archs)} architectures of the default search space (seed {args.seed}), "
          f"resolutions {sorted({a['resolution'] for a in archs})}, widths "
          f"{sorted({a['width'] for a in archs})}")
    print(f"{'fits':<22}" + "".join(f"{b // 1024:>8} KB" for b in BUDGETS))
    for label, c in columns:
        print(f"{label:<22}" + "".join(f"{n:>11}" for n in c))
    if before is not None:
        more = [a - b for a, b in zip(counts(after, "auto"), counts(before, "auto"))]
        print(f"{'more than before':<22}" + "".join(f"{n:>+11}" for n in more))
        print(f"planning time: {after_s:.1f} s this tree, {before_s:.1f} s the baseline "
              f"(both layer by layer and auto)")
    else:
        print(f"planning time: {after_s:.1f} s (layer by layer and auto)")
    kinds = {}
    for r in after:
        for part in r["stages"].split(","):
            kind = "none" if part == "none" else "stream" if part.startswith("stream") else "patch"
            kinds[kind] = kinds.get(kind, 0) + 1
    print("stages chosen here: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

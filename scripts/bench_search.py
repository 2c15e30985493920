"""The accuracy / SRAM trade-off of the search on Fashion-MNIST.

    python scripts/bench_search.py --stage1-only          # memory side only: seconds
    python scripts/bench_search.py --time-budget 900      # full searches, one per budget

For each SRAM budget (16, 32, 64, 128 KB; flash 128 KB) it prints stage 1's choice of width
and resolution, how many sampled networks fit and their mean MACs; without --stage1-only it
also runs `mcunet search` and prints the int8 test accuracy and the exported model's memory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sram", default="16,32,64,128", help="SRAM budgets in KB")
    ap.add_argument("--flash", default="128KB")
    ap.add_argument("--time-budget", type=float, default=900)
    ap.add_argument("--stage1-only", action="store_true")
    ap.add_argument("--out", default="bench-search")
    args = ap.parse_args()

    from mcunet.search.budget import CostCache, parse_bytes
    from mcunet.search.pipeline import SearchConfig, patch_plans
    from mcunet.search.space import default_space
    from mcunet.search.space_opt import optimise_space

    space = default_space()
    for kb in [int(s) for s in args.sram.split(",")]:
        cfg = SearchConfig("fashion-mnist", kb * 1024, parse_bytes(args.flash), "",
                           time_budget_s=args.time_budget)
        costs = CostCache(space, patch_plans=patch_plans(args.time_budget))
        (w, r), stats = optimise_space(space, cfg.budget, costs, 12, 0)
        pick = next(s for s in stats if (s.width, s.resolution) == (w, r))
        line = (f"{kb:4d} KB SRAM: stage 1 -> width {w:g}, resolution {r} ({pick.fitting}/"
                f"{pick.sampled} fit, mean {pick.mean_macs / 1e6:.2f} M MACs)")
        if not args.stage1_only:
            out = Path(args.out) / f"sram{kb}"
            cmd = [sys.executable, "-m", "mcunet", "search", "--dataset", "fashion-mnist",
                   "--sram", f"{kb}KB", "--flash", args.flash, "--time-budget",
                   str(args.time_budget), "--out", str(out), "--quiet"]
            if (out / "state.json").exists():
                cmd.append("--resume")
            subprocess.run(cmd, check=True)
            meta = json.loads((out / "model.json").read_text())
            m = meta["measured"]
            line += (f"; int8 test {100 * m['test_accuracy_int8']:.2f}%, peak SRAM "
                     f"{m['peak_sram_bytes']} B, flash {m['flash_bytes']} B, "
                     f"{m['macs'] / 1e6:.2f} M MACs, {meta['arch_key']}")
        print(line, flush=True)


if __name__ == "__main__":
    main()

"""Wall time of one search on a local Ray cluster of 1, 2, ... one-CPU worker nodes.

    python scripts/bench_ray.py                    # 1 and 2 workers, a small fixed-step search
    python scripts/bench_ray.py --workers 1,2,4 --out bench-ray

Each run starts a cluster (ray.cluster_utils.Cluster: a head that runs nothing and N nodes of
one CPU each), runs `mcunet search --ray ADDRESS` with fixed step counts (the same work on every
cluster, so the times compare), and prints the wall time, the phases' times from the log and
the result. The models differ between worker counts only through the data-parallel supernet
training (each replica normalises its own shard); with the same count they are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCH = ["--dataset", "fashion-mnist", "--sram", "32KB", "--flash", "128KB",
          "--max-macs", "3M", "--train-subset", "6000", "--supernet-steps", "150",
          "--generations", "3", "--population", "8", "--finetune-steps", "150",
          "--finetune-top", "2", "--seed", "0", "--quiet"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2", help="worker counts to time")
    ap.add_argument("--out", default="bench-ray")
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    rows = []
    for n in [int(s) for s in args.workers.split(",")]:
        out = Path(args.out) / f"workers-{n}"
        shutil.rmtree(out, ignore_errors=True)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(n):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        session = f"--session-dir={cluster.head_node.get_session_dir_path()}"
        try:
            start = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "mcunet", "search", *SEARCH, "--ray",
                                cluster.address, "--out", str(out)], capture_output=True,
                               text=True)
            wall = time.perf_counter() - start
        finally:
            strays = [pid for pid, cmd in _processes() if session in cmd]
            cluster.shutdown()
            for pid in strays:  # the nodes' dashboard agents can outlive the cluster
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if r.returncode:
            sys.exit(f"{n} workers: {r.stderr}")
        meta = json.loads((out / "model.json").read_text())
        state = json.loads((out / "state.json").read_text())
        m = meta["measured"]
        rows.append((n, wall, state["supernet"]["seconds"], m["val_accuracy_int8"],
                     m["test_accuracy_int8"], m["peak_sram_bytes"], meta["arch_key"]))
        print(f"{n} worker{'s' if n > 1 else ''}: {wall:.1f} s wall (supernet "
              f"{state['supernet']['seconds']:.1f} s), int8 {100 * m['val_accuracy_int8']:.2f}% "
              f"val / {100 * m['test_accuracy_int8']:.2f}% test, {m['peak_sram_bytes']} B SRAM, "
              f"{meta['arch_key']}", flush=True)
    print("\n| workers | wall s | supernet s | int8 val | int8 test | SRAM B | network |")
    print("|---|---|---|---|---|---|---|")
    for n, wall, sup, val, test, sram, key in rows:
        print(f"| {n} | {wall:.1f} | {sup:.1f} | {100 * val:.2f}% | {100 * test:.2f}% | {sram} | "
              f"{key} |")


def _processes():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
            except OSError:
                continue


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Peak SRAM of mcunet's plans against TFLM's arena, one row per model, all measured in this run.

usage:
    python scripts/bench_memory.py                     # MLPerf Tiny + the Keras MobileNets
    python scripts/bench_memory.py a.tflite b.tflite   # any int8 models
    python scripts/bench_memory.py --no-keras --json memory.json

Columns:
  TFLM total/head  TFLM's arena for the model (tflite-micro's RecordingMicroAllocator, read
                   from print_allocations() after one invoke, in a child process): total =
                   head (activations) + tail (persistent: tensor and node structs, buffers)
  bound            our layer-wise lower bound for the plan beside it (layer by layer, then
                   patch-based): the busiest step's live bytes less what the allowed overlaps
                   can save there at best
  none             our peak SRAM layer by layer (--patch none): arena incl. scratch, which is
                   all the RAM the generated library needs
  auto             our peak SRAM with --patch auto (the split and grid with the smallest
                   peak whose recomputed halos add at most 15% MACs)
  /TFLM            ours divided by TFLM's total
  patch            the chosen stage: RxC@LAYER (grid, index of the stage's last op)
  +MACs            extra MACs of the patch stage, in % of the model's MACs
  placement        the planner strategy that won for --patch auto

The Keras MobileNet(0.25, 128) and MobileNetV2(0.35, 96) are built by scripts/model_zoo.py
(random weights, full int8 with TF's converter: needs the [tf] extra) and cached.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_compile  # noqa: E402  (TFLM's arena in a child process)

TARGET_NONE = 0.60  # issue 3: layer by layer, every model
TARGET_AUTO = 0.35  # with patches, the MobileNet-style models
MOBILENET_STYLE = ("vww_96_int8", "keras_mobilenet_025_128", "keras_mobilenetv2_035_96")


def measure(path: Path) -> dict:
    from mcunet.compiler import compile_model
    from mcunet.host import random_inputs

    row: dict = {"model": path.stem, "path": str(path)}
    t0 = time.perf_counter()
    none = compile_model(path, patch="none")
    auto = compile_model(path, patch="auto")
    row["plan_s"] = round(time.perf_counter() - t0, 2)
    row.update(none_bytes=none.peak_sram_bytes, auto_bytes=auto.peak_sram_bytes,
               bound_none_bytes=none.plan.lower_bound, bound_auto_bytes=auto.plan.lower_bound,
               patch=str(auto.patch.spec) if auto.patch else "none",
               mac_overhead=auto.patch.mac_overhead if auto.patch else 0.0,
               placement=auto.plan.strategy, macs=none.macs)
    with tempfile.TemporaryDirectory() as tmp:
        tflm = bench_compile.measure_tflm(path, random_inputs(none.graph, 2, 0),
                                          len(none.graph.outputs), Path(tmp))
    if "error" in tflm:
        row["tflm_error"] = tflm["error"]
        return row
    row.update(tflm_total_bytes=tflm["arena_total"], tflm_head_bytes=tflm["arena_head"])
    row["ratio_none"] = row["none_bytes"] / row["tflm_total_bytes"]
    row["ratio_auto"] = row["auto_bytes"] / row["tflm_total_bytes"]
    return row


def table(rows: list[dict]) -> str:
    headers = ["model", "TFLM total", "TFLM head", "bound", "none", "/TFLM", "bound", "auto",
               "/TFLM", "patch", "+MACs", "placement"]
    lines = [headers]
    for r in rows:
        if "tflm_error" in r:
            tflm = ["failed", "failed"]
            ratios = ["-", "-"]
        else:
            tflm = [f"{r['tflm_total_bytes']:,}", f"{r['tflm_head_bytes']:,}"]
            ratios = [f"{r['ratio_none']:.3f}", f"{r['ratio_auto']:.3f}"]
        lines.append([r["model"], *tflm, f"{r['bound_none_bytes']:,}", f"{r['none_bytes']:,}",
                      ratios[0], f"{r['bound_auto_bytes']:,}", f"{r['auto_bytes']:,}", ratios[1],
                      r["patch"],
                      f"{100 * r['mac_overhead']:.1f}%", r["placement"]])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(headers))]
    out = []
    for n, line in enumerate(lines):
        out.append(" | ".join(str(c).ljust(w) if i in (0, 9, 11) else str(c).rjust(w)
                              for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            out.append("-|-".join("-" * w for w in widths))
    return "\n".join(out)


def verdicts(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        if "tflm_error" in r:
            lines.append(f"{r['model']}: TFLM failed ({r['tflm_error']}): no ratio")
            continue
        ok = r["ratio_none"] <= TARGET_NONE
        lines.append(f"{r['model']}: none {r['ratio_none']:.3f}x TFLM total "
                     f"({'within' if ok else 'OVER'} the {TARGET_NONE}x target)")
        if r["model"] in MOBILENET_STYLE:
            ok = r["ratio_auto"] <= TARGET_AUTO
            lines.append(f"{r['model']}: auto {r['ratio_auto']:.3f}x TFLM total "
                         f"({'within' if ok else 'OVER'} the {TARGET_AUTO}x target)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--no-keras", action="store_true",
                    help="skip the Keras MobileNets (they need TensorFlow to build once)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the rows here")
    args = ap.parse_args(argv)
    models = list(args.models)
    if not models:
        models = [bench_compile.DEFAULT_MODEL_DIR / m for m in bench_compile.DEFAULT_MODELS]
        if not args.no_keras:
            import model_zoo
            models += [model_zoo.build(name) for name in model_zoo.MODELS]
    missing = [str(m) for m in models if not Path(m).is_file()]
    if missing:
        ap.error(f"no such model: {', '.join(missing)}")
    rows = []
    for path in models:
        print(f"measuring {Path(path).name} ...", file=sys.stderr, flush=True)
        rows.append(measure(Path(path)))
    print(table(rows))
    print()
    print("\n".join(verdicts(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

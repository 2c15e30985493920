#!/usr/bin/env python3
"""Fit the cost model (mcunet/costmodel.py) to instructions counted on the emulated boards.

For every network of the fitting corpus (scripts/corpus.py: the search space's networks,
random layer stacks and single-op models; not the MLPerf Tiny models) and every emulated
board, compiled as `mcunet run --board` compiles it (the board's core and free flash: the
DSP convs on int16 filters where it has room), a profile build runs one row under QEMU,
which counts each step's instructions. The
measurements are kept in --data (so a refit needs no runs); per core and kernel, a
non-negative least-squares fit of relative error gives the coefficients written to
mcunet/costmodel_table.py. Then the fit's error on the corpus is printed, per kernel.

    python scripts/fit_costmodel.py [--boards mps2-an386,mps2-an385,mps2-an500,mps2-an505]
                                    [--networks 24] [--stacks 24] [--data costmodel-data.json]
                                    [--refit] [--merge] [--int8-filters] [--only KERNELS]

--int8-filters compiles without a flash budget, so the DSP conv's pair path runs on int8
filters (how conv2d_s8_dsp is refitted: --only conv2d_s8_dsp --int8-filters).

--merge fits only the cores of --boards and keeps the table's other cores as they are: how a
newly emulated core is added without measuring the others again, e.g.
    python scripts/fit_costmodel.py --boards mps2-an505 --dense 40 --data m33.json --merge
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def measure(items, board_names, data_path: Path, int8: bool = False) -> list[dict]:
    """One record per single-step span: core, kernel, features, instructions. int8: the
    convolutions on their int8 filters (no flash budget), as the search compiles them."""
    from mcunet.boards import get_board
    from mcunet.boards.firmware import run_on_board, spans_alone
    from mcunet.compiler import compile_graph
    from mcunet.costmodel import features
    from mcunet.host import random_inputs

    records = json.loads(data_path.read_text()) if data_path.exists() else []
    done = {(r["board"], r["model"]) for r in records}
    for board_name in board_names:
        board = get_board(board_name)
        for name, graph in items:
            for patch in ("none", "auto"):
                key = f"{name}@{patch}"
                if (board.name, key) in done:
                    continue
                start = time.perf_counter()
                try:
                    model = compile_graph(graph, patch=patch, target=board.target,
                                          flash_budget=None if int8 else board.flash_bytes)
                    if patch == "auto" and model.patch is None:
                        continue  # the same steps as layer by layer
                    result = run_on_board(model, board, random_inputs(model.graph, 1, seed=3),
                                          profile=True)
                except Exception as exc:  # a corpus network the toolchain cannot take
                    print(f"  {board.name} {key}: {exc}", file=sys.stderr)
                    continue
                for s, span in zip(spans_alone(model), result.layers):
                    if s is not None:
                        records.append({"board": board.name, "core": board.core,
                                        "model": key, "kernel": s.kernel.name,
                                        "features": features(s, model.graph),
                                        "instructions": span["instructions"]})
                records.append({"board": board.name, "model": key, "kernel": None,
                                "instructions": result.instructions})
                data_path.write_text(json.dumps(records))
                print(f"{board.name} {key}: {len(result.layers)} spans, "
                      f"{result.instructions:,} instructions ({time.perf_counter() - start:.1f} s)",
                      flush=True)
    return records


def single_steps(model) -> list:
    """The steps a profile build measures alone (a span of one step), in order."""
    from mcunet.boards.firmware import spans_alone

    return [s for s in spans_alone(model) if s is not None]


def with_features(records: list[dict], items, int8: bool = False) -> list[dict]:
    """The records with their steps' features computed now (the feature set may have grown
    since they were measured): the corpus is rebuilt and each network compiled again, which
    gives the same steps in the same order (for the board's core and free flash, as
    measured)."""
    from mcunet.boards import get_board
    from mcunet.compiler import compile_graph
    from mcunet.costmodel import features

    graphs = dict(items)
    by_model: dict[tuple, list[dict]] = {}
    for r in records:
        if r["kernel"]:
            by_model.setdefault((r["core"], r["model"]), []).append(r)
    out = []
    for (core, key), rows in by_model.items():
        name, patch = key.rsplit("@", 1)
        if name not in graphs:
            continue
        model = compile_graph(graphs[name], patch=patch, target=core,
                              flash_budget=None if int8 else get_board(rows[0]["board"]).flash_bytes)
        steps = single_steps(model)
        if len(steps) != len(rows) or any(s.kernel.name != r["kernel"] for s, r in zip(steps, rows)):
            print(f"  {core} {key}: the steps changed since it was measured; left out",
                  file=sys.stderr)
            continue
        out += [{**r, "features": features(s, model.graph)} for s, r in zip(steps, rows)]
    return out


def fit(records: list[dict]) -> dict:
    from mcunet.costmodel import FEATURES, fit_nnls

    table: dict = {}
    for core in sorted({r["core"] for r in records if r["kernel"]}):
        table[core] = {}
        for kernel in sorted({r["kernel"] for r in records if r["kernel"] and r.get("core") == core}):
            mine = [r for r in records if r.get("core") == core and r["kernel"] == kernel
                    and r["instructions"] > 0]
            used = [f for f in FEATURES if any(r["features"][f] for r in mine)]
            coef = fit_nnls([[r["features"][f] for f in used] for r in mine],
                            [r["instructions"] for r in mine])
            table[core][kernel] = {f: c for f, c in zip(used, coef) if c > 0}
    return table


def write_table(table: dict, records: list[dict], only: set[str] | None = None,
                merged: dict[str, str] | None = None) -> Path:
    """merged: core -> board of the cores fitted now with --merge (the others kept)."""
    out = ROOT / "mcunet" / "costmodel_table.py"
    models = len({r["model"] for r in records})
    spans = len([r for r in records if r["kernel"]])
    if merged:  # the earlier fit's account stays, the added cores' is appended
        from mcunet import costmodel_table

        doc = costmodel_table.__doc__.strip().splitlines()
        cores = ", ".join(f"{core} ({board})" for core, board in sorted(merged.items()))
        doc += textwrap.wrap(f"Fitted with --merge, the other cores kept: {cores}, to {spans} "
                             f"single-step spans of {models} networks.", 88)
        lines = ['"""' + doc[0]] + doc[1:-1] + [doc[-1] + '"""', "", "TABLE = {"]
    elif only:  # the earlier fits' account stays (every refit's line), this one is added
        from mcunet import costmodel_table

        doc = costmodel_table.__doc__.strip().splitlines()
        doc += textwrap.wrap(f"Refitted with --only: {', '.join(sorted(only))}, to {spans} "
                             f"spans of {models} networks.", 88)
        lines = ['"""' + doc[0]] + doc[1:-1] + [doc[-1] + '"""', "", "TABLE = {"]
    else:
        lines = ['"""Cost model coefficients: instructions = sum(coefficient * feature) per core and',
                 "kernel (mcunet.costmodel.features), fitted by scripts/fit_costmodel.py (which wrote",
                 f"this file) to {spans} single-step spans of {models} corpus networks",
                 'counted on the emulated MPS2 boards."""', "", "TABLE = {"]
    for core, kernels in table.items():
        lines.append(f"    {core!r}: {{")
        for kernel, coef in kernels.items():
            terms = ", ".join(f"{k!r}: {v:.6g}" for k, v in coef.items())
            lines.append(f"        {kernel!r}: {{{terms}}},")
        lines.append("    },")
    lines.append("}")
    out.write_text("\n".join(lines) + "\n")
    return out


def report(table: dict, records: list[dict]) -> None:
    from mcunet.costmodel import FEATURES

    print(f"\n{'core':<14} {'kernel':<32} {'spans':>6} {'median |err|':>12} {'max |err|':>10}")
    for core, kernels in table.items():
        for kernel, coef in kernels.items():
            mine = [r for r in records if r.get("core") == core and r["kernel"] == kernel
                    and r["instructions"] > 0]
            err = [abs(sum(coef.get(f, 0) * r["features"][f] for f in FEATURES)
                       / r["instructions"] - 1) for r in mine]
            if not err:  # not refitted (--only): its spans are in the earlier data
                continue
            print(f"{core:<14} {kernel:<32} {len(mine):>6} {100 * np.median(err):>11.1f}% "
                  f"{100 * max(err):>9.1f}%")


def main() -> int:
    from corpus import corpus

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="mps2-an386,mps2-an385,mps2-an500,mps2-an505")
    ap.add_argument("--networks", type=int, default=24)
    ap.add_argument("--stacks", type=int, default=24)
    ap.add_argument("--data", default=str(ROOT / "costmodel-data.json"))
    ap.add_argument("--refit", action="store_true", help="only fit the measurements in --data")
    ap.add_argument("--dense", type=int, default=0,
                    help="also this many chains of FULLY_CONNECTED layers (scripts/corpus.py)")
    ap.add_argument("--only", default=None,
                    help="refit only these kernels (comma-separated names), keeping the table's "
                         "other entries: after a kernel changed, measure a corpus that has it "
                         "(e.g. --networks 0 --stacks 0 --dense 40) into its own --data")
    ap.add_argument("--int8-filters", action="store_true",
                    help="compile without a flash budget (the convolutions on their int8 filters, "
                         "as the search and --target compile them): how conv2d_s8_dsp's pair path "
                         "is measured, which the boards' free flash otherwise widens")
    ap.add_argument("--merge", action="store_true",
                    help="fit only the cores of --boards, keeping the table's other cores")
    args = ap.parse_args()
    if args.merge and args.only:
        sys.exit("error: --merge and --only do not combine (refit kernels of every core, or "
                 "add whole cores)")
    data = Path(args.data)
    items = corpus(networks=args.networks, stacks=args.stacks, ops=not args.only)
    if args.dense:
        from corpus import dense_stacks
        items += dense_stacks(args.dense, 2000)
    if args.refit:
        records = json.loads(data.read_text())
    else:
        records = measure(items, args.boards.split(","), data, args.int8_filters)
    records = with_features(records, items, args.int8_filters)
    merged = None
    if args.merge:
        from mcunet.boards import get_board

        boards = {get_board(b).core: get_board(b).name for b in args.boards.split(",")}
        records = [r for r in records if r.get("core", None) in boards or
                   (r["kernel"] is None and r["board"] in boards.values())]
    table = fit(records)
    if args.merge:
        from mcunet.costmodel_table import TABLE

        merged = {core: board for core, board in boards.items() if core in table}
        table = {**TABLE, **table}
    if args.only:
        from mcunet.costmodel_table import TABLE

        only = set(args.only.split(","))
        records = [r for r in records if r["kernel"] in only]
        table = {core: {**TABLE.get(core, {}), **{k: v for k, v in fitted.items() if k in only}}
                 for core, fitted in table.items()}
        table = {**TABLE, **table}
    print(f"wrote {write_table(table, records, set(args.only.split(',')) if args.only else None, merged)}")
    report(table, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())

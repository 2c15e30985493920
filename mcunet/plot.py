"""The memory-per-layer figure (as in MCUNetV2): live arena bytes at every layer, layer by
layer against patch-based, against the budget, with the cost model's instructions per layer
below; and the self-contained HTML report that embeds it."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from .budget import fit, usage
from .compiler import CompiledModel
from .costmodel import MEASURED_ON, estimate
from .report import arithmetic_line, budget_of, io_lines, layer_estimates, shape, where

FIGURE_WIDTH_IN = 9.6  # 960 pixels at FIGURE_DPI: the report's page width, whatever the model
FIGURE_DPI = 100


COLORS = {"patch": "#2f6db3", "stream": "#2e9a5b"}


def memory_png(layerwise: CompiledModel, chosen: CompiledModel, title: str) -> bytes:
    """A PNG of live bytes per layer; `chosen` is drawn beside the layer-by-layer plan when
    it differs (patch-based or streamed stages, each shaded and named). The budget's SRAM less
    the kernels' stack (what the arena may use) is a line; the cost model's instructions per
    layer a second panel, where known."""
    # The figure without pyplot (no global state, nothing to close) on the Agg canvas.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    base = layerwise.layers
    ops = [r["index"] for r in base]
    est = layer_estimates(chosen)
    cost = any(v is not None for v in est.values())
    fig = Figure(figsize=(FIGURE_WIDTH_IN, 5.6 if cost else 3.4), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if cost else 1, 1, sharex=True, squeeze=False)
    ax = axes[0][0]
    x = range(len(ops))
    bars(ax, [r["live_bytes"] / 1024 for r in base], width=0.8, color="#c9c9c9",
         label=f"layer by layer (arena {layerwise.plan.arena_bytes / 1024:.1f} KiB)")
    if chosen.stages:
        live = {r["index"]: r["live_bytes"] for r in chosen.layers}
        kinds = {s.kind for s in chosen.stages}
        what = " and ".join(name for kind, name in (("patch", "patch-based"), ("stream", "streamed"))
                            if kind in kinds)
        named = chosen.schedule if len(chosen.schedule) <= 60 else f"({len(chosen.stages)} stages)"
        bars(ax, [live.get(i, 0) / 1024 for i in ops], width=0.45, color="#333333",
             label=f"{what} {named} (arena {chosen.plan.arena_bytes / 1024:.1f} KiB)")
        at = {op: k for k, op in enumerate(ops)}
        for stage in chosen.stages:
            span = [at[op] for op in stage.ops if op in at]
            if not span:
                continue
            ax.axvspan(min(span) - 0.5, max(span) + 0.5, color=COLORS[stage.kind], alpha=0.12)
            ax.text((min(span) + max(span)) / 2, ax.get_ylim()[1] * 0.97, str(stage.spec),
                    ha="center", va="top", fontsize=6, color=COLORS[stage.kind])
    budget = budget_of(chosen)
    if budget.sram_bytes is not None:
        limit = (budget.sram_bytes - chosen.stack_bytes) / 1024
        top = max(r["live_bytes"] for r in base) / 1024
        if limit <= 4 * top:  # a budget far above every layer would flatten the bars
            ax.axhline(limit, color="#c0392b", linestyle="--", linewidth=1,
                       label=f"SRAM budget less stack ({limit:.1f} KiB)")
        else:
            ax.text(0.01, 0.95, f"SRAM budget {budget.sram_bytes / 1024:,.0f} KiB "
                    f"(off the scale)", transform=ax.transAxes, fontsize=7, va="top")
    ax.set_ylabel("live arena (KiB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    if cost:
        ax2 = axes[1][0]
        bars(ax2, [(est.get(i) or 0) / 1e3 for i in ops], width=0.8, color="#7a9e4b")
        ax2.set_ylabel("est. instructions (k)")
    every = max(1, len(ops) // 40)  # at most ~40 labels: the figure keeps its width
    last = axes[-1][0]
    last.set_xticks(list(x)[::every])
    last.set_xticklabels([str(i) for i in ops][::every], fontsize=6)
    last.set_xlabel("op index (shaded: blue patch by patch, green streamed row by row)"
                    if chosen.stages else "op index")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def bars(ax, heights: list[float], width: float, color: str, label: str | None = None) -> None:
    """A bar per layer at x = 0, 1, ... as one collection: Axes.bar makes an artist per bar,
    which for a network of a few hundred layers is most of the figure's time."""
    from matplotlib.collections import PolyCollection

    half = width / 2
    boxes = [[(k - half, 0), (k - half, h), (k + half, h), (k + half, 0)]
             for k, h in enumerate(heights)]
    collection = PolyCollection(boxes, facecolors=color, edgecolors="none", label=label)
    collection.sticky_edges.y.append(0)  # as bars: the axis starts at 0, no margin below
    ax.add_collection(collection)
    ax.autoscale_view()


def html_report(chosen: CompiledModel, layerwise: CompiledModel, png: bytes,
                files: list[str]) -> str:
    """One HTML file with no outside references: where it runs, what it needs of what there
    is, the inputs' and outputs' quantisation, the figure and the per-layer table."""
    g = chosen.graph
    summary = chosen.summary()
    budget = budget_of(chosen)
    result = fit(chosen, chosen.budget)
    est = layer_estimates(chosen)
    show = any(v is not None for v in est.values())
    rows = []
    for r in chosen.layers:
        cells = [r["index"], r["op"], r["kernel"], shape(r["output_shape"]),
                 f"{r['output_bytes']:,}", f"{r['scratch_bytes']:,}", f"{r['live_bytes']:,}",
                 f"{r['macs']:,}"]
        if show:
            cells.append(f"{est[r['index']]:,}" if est.get(r["index"]) is not None else "-")
        cells.append(", ".join(r["marks"]))
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    flash = chosen.flash_total_bytes if chosen.flash_total_bytes is not None else chosen.flash_bytes
    facts = [
        ("target", f"{where(chosen)}: {chosen.target.kernels} kernels"),
        ("arithmetic", arithmetic_line(chosen.options.arithmetic)),
        ("fits", "yes" if result.fits else "NO: " + "; ".join(result.problems)),
        ("peak SRAM", usage(chosen.peak_sram_bytes, budget.sram_bytes) +
         f" (arena {chosen.plan.arena_bytes:,}" +
         (f" + stack {chosen.stack_bytes:,})" if chosen.stack_bytes else ")")),
        ("flash", usage(flash, budget.flash_bytes) + f" (weights and constants "
         f"{chosen.flash_bytes:,}" + (f" + code {chosen.code_bytes:,})"
                                      if chosen.code_bytes is not None else ")")),
        ("layer by layer", f"arena {layerwise.plan.arena_bytes:,} bytes"),
        ("layer-wise lower bound", f"{chosen.plan.lower_bound:,} bytes"),
        ("MACs", f"{chosen.macs:,}"),
        ("patch-based and streamed stages", summary["patch"]),
        ("extra MACs from patches", f"{100 * summary['patch_mac_overhead']:.1f}%"),
        ("extra work (MACs and kernel calls)", f"{100 * summary['overhead']:.1f}%"),
        ("placement", summary["placement"]),
    ]
    cost = estimate(chosen)
    if cost is not None:
        at = f", {cost.latency_s(budget.clock_hz) * 1e3:.2f} ms at {budget.clock_hz / 1e6:g} MHz" \
            if budget.clock_hz else ""
        facts.insert(5, ("estimated", f"{cost.instructions:,} instructions{at} (cost model "
                         f"fitted on {MEASURED_ON[cost.core]}, one instruction per cycle)"))
    facts += [(line.split(":")[0], line.split(":", 1)[1].strip()) for line in io_lines(g)]
    image = base64.b64encode(png).decode()
    headers = ["#", "op", "kernel", "output", "out bytes", "scratch", "live bytes", "MACs"] + \
        (["est. insn"] if show else []) + ["marks"]
    title = f"mcunet report: {html.escape(g.name)} on {html.escape(where(chosen))}"
    return "\n".join([
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
        f"<title>{title}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1000px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
        "font-size:13px}td:nth-child(n+5){text-align:right}"
        "img{max-width:100%;height:auto}</style></head><body>",
        f"<h1>{title}</h1>",
        "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                            for k, v in facts) + "</table>",
        f"<h2>Memory and estimated instructions per layer</h2><img alt='live arena per layer' "
        f"src='data:image/png;base64,{image}'>",
        "<h2>Layers</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>",
        *rows, "</table>",
        "<h2>Files</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in files) + "</ul>",
        "</body></html>", ""])


def write_png(path: Path, png: bytes) -> Path:
    path.write_bytes(png)  # into an existing folder (mcunet.outdir checks it)
    return path

"""The memory-per-layer figure (as in MCUNetV2): live arena bytes at every layer, layer by
layer against patch-based, and the self-contained HTML report that embeds it."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from .compiler import CompiledModel
from .report import shape


COLORS = {"patch": "#2f6db3", "stream": "#2e9a5b"}


def memory_png(layerwise: CompiledModel, chosen: CompiledModel, title: str) -> bytes:
    """A PNG of live bytes per layer; `chosen` is drawn beside the layer-by-layer plan when
    it differs (patch-based or streamed stages, each shaded and named)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = layerwise.layers
    ops = [r["index"] for r in base]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(ops)), 3.6), dpi=110)
    x = range(len(ops))
    ax.bar(x, [r["live_bytes"] / 1024 for r in base], width=0.8, color="#c9c9c9",
           label=f"layer by layer (peak {layerwise.peak_sram_bytes / 1024:.1f} KiB)")
    if chosen.stages:
        live = {r["index"]: r["live_bytes"] for r in chosen.layers}
        kinds = {s.kind for s in chosen.stages}
        what = " and ".join(name for kind, name in (("patch", "patch-based"), ("stream", "streamed"))
                            if kind in kinds)
        ax.bar(x, [live.get(i, 0) / 1024 for i in ops], width=0.45, color="#333333",
               label=f"{what} {chosen.schedule} (peak {chosen.peak_sram_bytes / 1024:.1f} KiB)")
        at = {op: k for k, op in enumerate(ops)}
        for stage in chosen.stages:
            span = [at[op] for op in stage.ops if op in at]
            if not span:
                continue
            ax.axvspan(min(span) - 0.5, max(span) + 0.5, color=COLORS[stage.kind], alpha=0.12)
            ax.text((min(span) + max(span)) / 2, ax.get_ylim()[1] * 0.97, str(stage.spec),
                    ha="center", va="top", fontsize=6, color=COLORS[stage.kind])
    ax.set_xticks(list(x))
    ax.set_xticklabels([str(i) for i in ops], fontsize=6)
    ax.set_xlabel("op index (shaded: blue patch by patch, green streamed row by row)"
                  if chosen.stages else "op index")
    ax.set_ylabel("live arena (KiB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def html_report(chosen: CompiledModel, layerwise: CompiledModel, png: bytes,
                files: list[str]) -> str:
    """One HTML file with no outside references: the summary, the figure and the table."""
    g = chosen.graph
    summary = chosen.summary()
    rows = []
    for r in chosen.layers:
        cells = [r["index"], r["op"], r["kernel"], shape(r["output_shape"]),
                 f"{r['output_bytes']:,}", f"{r['scratch_bytes']:,}", f"{r['live_bytes']:,}",
                 f"{r['macs']:,}", ", ".join(r["marks"])]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    facts = [
        ("peak SRAM", f"{chosen.peak_sram_bytes:,} bytes"),
        ("layer by layer", f"{layerwise.peak_sram_bytes:,} bytes"),
        ("layer-wise lower bound", f"{chosen.plan.lower_bound:,} bytes"),
        ("flash", f"{chosen.flash_bytes:,} bytes"),
        ("MACs", f"{chosen.macs:,}"),
        ("patch-based and streamed stages", summary["patch"]),
        ("extra MACs from patches", f"{100 * summary['patch_mac_overhead']:.1f}%"),
        ("extra work (MACs and kernel calls)", f"{100 * summary['overhead']:.1f}%"),
        ("placement", summary["placement"]),
    ]
    image = base64.b64encode(png).decode()
    return "\n".join([
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
        f"<title>mcunet report: {html.escape(g.name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
        "td:nth-child(n+5){text-align:right}</style></head><body>",
        f"<h1>mcunet report: {html.escape(g.name)}</h1>",
        "<table>" + "".join(f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
        + "</table>",
        f"<h2>Memory per layer</h2><img alt='live arena per layer' src='data:image/png;base64,{image}'>",
        "<h2>Layers</h2><table><tr><th>#</th><th>op</th><th>kernel</th><th>output</th>"
        "<th>out bytes</th><th>scratch</th><th>live bytes</th><th>MACs</th><th>marks</th></tr>",
        *rows, "</table>",
        "<h2>Files</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in files) + "</ul>",
        "</body></html>", ""])


def write_png(path: Path, png: bytes) -> Path:
    path.write_bytes(png)  # into an existing folder (mcunet.outdir checks it)
    return path

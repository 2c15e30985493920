"""Human-readable tables of a model: what `inspect`, `plan` and `compile` print."""
from __future__ import annotations

from .analysis import op_macs, op_params
from .budget import Budget, usage
from .compiler import CompiledModel
from .costmodel import MEASURED_ON, estimate, step_estimates
from .graph import Graph

HIGH_OVERHEAD = 0.05  # a patch stage adding this share of MACs or more names its causes


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table; `align` is one of l/r per column (numbers right by default)."""
    cells = [[str(c) for c in headers]] + [[f"{c:,}" if isinstance(c, int) else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "".join("r" if rows and isinstance(rows[0][i], int) else "l"
                             for i in range(len(headers)))
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                               for c, w, a in zip(r, widths, align)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def shape(s) -> str:
    return "x".join(map(str, s)) if s else "scalar"


def inspect_table(graph: Graph) -> str:
    rows = []
    for op in graph.ops:
        ins = [graph.t(i) for i in op.inputs if i >= 0 and not graph.t(i).is_const]
        out = graph.t(op.outputs[0])
        rows.append([op.index, op.kind, " + ".join(shape(t.shape) for t in ins) or "-",
                     shape(out.shape), op_macs(graph, op), op_params(graph, op),
                     sum(t.nbytes for t in ins), out.nbytes])
    total = ["", "total", "", "", sum(r[4] for r in rows), sum(r[5] for r in rows), "", ""]
    return table(["#", "op", "input", "output", "MACs", "params", "in bytes", "out bytes"],
                 rows + [total], align="rllrrrrr")


def io_lines(graph: Graph) -> list[str]:
    lines = []
    for kind, tids in (("input", graph.inputs), ("output", graph.outputs)):
        for k, tid in enumerate(tids):
            t = graph.t(tid)
            q = f", scale {t.quant.s:.6g}, zero point {t.quant.zp}" if t.quant else ""
            lines.append(f"{kind} {k}: '{t.name}' {shape(t.shape)} {t.dtype}{q}")
    return lines


def where(model: CompiledModel) -> str:
    """'cortex-m4 (board mps2-an386)', 'host'."""
    b = model.budget.board if model.budget else None
    return f"{model.target.name} (board {b})" if b else model.target.name


def layer_estimates(model: CompiledModel) -> dict[int, int | None]:
    """The cost model's instructions per op (a patch stage's op: all its patches)."""
    per_op: dict[int, int | None] = {}
    for step, est in zip(model.steps, step_estimates(model)):
        i = step.op.index
        if est is None or per_op.get(i, 0) is None:
            per_op[i] = None
        else:
            per_op[i] = per_op.get(i, 0) + est
    return per_op


def plan_table(model: CompiledModel) -> str:
    est = layer_estimates(model)
    show = any(v is not None for v in est.values())
    rows = [[r["index"], r["op"], r["kernel"], shape(r["output_shape"]), r["output_bytes"],
             r["scratch_bytes"], r["live_bytes"], r["macs"]]
            + ([est.get(r["index"]) if est.get(r["index"]) is not None else "-"] if show else [])
            + [", ".join(r["marks"])]
            for r in model.layers]
    headers = ["#", "op", "kernel", "output", "out bytes", "scratch", "live bytes", "MACs"] + \
        (["est. insn"] if show else []) + ["marks"]
    return f"plan for {where(model)}\n" + table(headers, rows,
                                                 align="rlllrrrr" + ("r" if show else "") + "l")


def budget_of(model: CompiledModel) -> Budget:
    return model.budget or Budget()


def arithmetic_line(arithmetic: str) -> str:
    """--arithmetic in words: whose kernels the generated code equals bit for bit."""
    if arithmetic == "tflm":
        return "tflm (bit-exact with TF Lite Micro's kernels)"
    return f"{arithmetic} (bit-exact with TFLite's reference kernels)"


def summary_lines(model: CompiledModel) -> list[str]:
    b = budget_of(model)
    parts = f"arena {model.plan.arena_bytes:,}, scratch included" + (
        f", + stack {model.stack_bytes:,}" if model.stack_bytes else "")
    fp = model.footprint
    if model.flash_total_bytes is not None:
        flash = (f"{usage(model.flash_total_bytes, b.flash_bytes)} (weights and constants "
                 f"{model.flash_bytes:,} + code {model.code_bytes:,}, from {fp.source})")
    elif model.target.footprint is not None and not model.measures_footprint:  # host, no --flash
        flash = (f"{usage(model.flash_bytes, b.flash_bytes)} (weights and constants; code not "
                 f"measured on the host: give --flash to count it, or --target/--board for a "
                 f"microcontroller's)")
    else:
        flash = f"{usage(model.flash_bytes, b.flash_bytes)} (weights and constants)"
    lines = [
        f"target:                 {where(model)}: {model.target.kernels} kernels",
        f"arithmetic:             {arithmetic_line(model.options.arithmetic)}",
        f"peak SRAM:              {usage(model.peak_sram_bytes, b.sram_bytes)} ({parts})",
        f"layer-wise lower bound: {model.plan.lower_bound:,} bytes",
        f"flash:                  {flash}",
        f"MACs:                   {model.macs:,}",
    ]
    cost = estimate(model)
    if cost is not None:
        clock = f", {cost.latency_s(b.clock_hz) * 1e3:.2f} ms at {b.clock_hz / 1e6:g} MHz" \
            if b.clock_hz else ""
        note = "" if cost.complete else " (some kernels not in the cost model)"
        lines.append(f"estimated:              {cost.instructions:,} instructions{clock} "
                     f"(cost model fitted on {MEASURED_ON[cost.core]}, one instruction per "
                     f"cycle){note}")
    if not model.stages:
        lines.append("patch stage:            none (layer by layer)")
    for stage in model.stages:
        label = "patch stage:" if stage.kind == "patch" else "streamed:"
        lines.append(f"{label:<24}{stage_line(stage)}")
    if model.stages:
        lines.append(f"extra work:             {100 * model.overhead:+.1f}% instructions (estimated; "
                     f"MACs +{100 * model.mac_overhead:.1f}%, {model.extra_calls:,} more kernel calls)")
    return lines


def stage_line(stage) -> str:
    """One stage in words: what runs how, what it costs, and which windows cause its halos."""
    spec = stage.spec
    ops = f"ops {stage.ops[0]}-{stage.ops[-1]}" if len(stage.ops) > 1 else f"op {stage.ops[0]}"
    if stage.kind == "patch":
        text = (f"{spec} ({spec.rows}x{spec.cols} patches through {ops}, {stage.stage_steps} "
                f"layers), +{100 * stage.mac_overhead:.1f}% MACs")
        if stage.blame and stage.mac_overhead >= HIGH_OVERHEAD:
            causes = ", ".join(f"op {op} ({100 * share:.0f}%)" for op, share in stage.blame[:3])
            text += (f"; its halos come from the receptive fields of {causes}: the share of the "
                     f"extra MACs a window no wider than its stride would save there; smaller "
                     f"windows in the stage, larger ones after it, would cut them")
        return text
    rows = f"{spec.rows} rows" if spec.rows > 1 else "one row"
    return (f"{spec} ({ops} row by row, {rows} of output a band, {stage.stage_steps} layers in "
            f"{stage.num_steps} steps), no extra MACs")


def compile_report(model: CompiledModel, files: list[str]) -> str:
    """The short Markdown report written beside a compiled library."""
    g = model.graph
    return "\n".join([
        f"# mcunet report: {g.name} on {where(model)}", "",
        *[f"- {line}" for line in io_lines(g)],
        *[f"- {line}" for line in summary_lines(model)], "",
        "## Layers (live bytes: all buffers live while the layer runs)", "", "```",
        plan_table(model), "```", "",
        "## Files", "", *[f"- `{f}`" for f in files], "",
    ])

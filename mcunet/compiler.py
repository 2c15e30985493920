"""The pipeline: .tflite -> graph -> passes -> lowered steps -> arena plan -> C library."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import McunetError
from .frontend import read_tflite
from .graph import Graph
from .memory import (ArenaPlan, Overlap, align, elementwise_max_delta, plan_arena,
                     window_max_delta)
from .passes import run_passes
from .patch import DEFAULT_MAX_OVERHEAD, PatchSpec, PatchStage, apply_patches, parse_patch
from .patch import candidates as patch_candidates
from .schedule import candidate_orders

PATCH_CHOICES = ("auto", "none", "RxC@LAYER")
AUTO_FINALISTS = 3  # patch stages planned in full after the quick ranking
AUTO_MIN_SAVING = 0.02  # a patch stage must save this share of the peak to be worth its code


@dataclass
class CompiledModel:
    graph: Graph
    steps: list  # codegen.step.Step, one per scheduled op
    consts: list  # codegen.step.ConstArray, the flash contents
    plan: ArenaPlan
    # The deepest stack of the generated code on the target core, when a board is known
    # (boards measure it from -fstack-usage); part of the RAM the library needs.
    stack_bytes: int = 0
    patch: PatchStage | None = None  # the patch-based stage, when there is one

    @property
    def flash_bytes(self) -> int:
        return sum(c.nbytes for c in self.consts)

    @property
    def peak_sram_bytes(self) -> int:
        """All RAM the generated library needs during inference: the arena holds every
        activation and every kernel's scratch, the library has no other buffers, and on a
        known board the kernels' stack is added."""
        return self.plan.arena_bytes + self.stack_bytes

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    def library(self):
        from mcunet.codegen.library import render_library
        return render_library(self.graph, self.steps, self.consts, self.plan)

    def layers(self) -> list[dict]:
        """Per-op figures for reports and `mcunet plan --json`. A layer of a patch stage runs
        once per patch: its row sums the MACs and shows the busiest patch."""
        rows: list[dict] = []
        by_op: dict[int, dict] = {}
        stage_ops = {s.op.index for s in self.steps[:self.patch.num_steps]} if self.patch else set()
        g = self.graph
        for i, step in enumerate(self.steps):
            live = self.plan.live_bytes(i)
            row = by_op.get(step.op.index)
            if row is not None and step.op.index in stage_ops:
                row["live_bytes"] = max(row["live_bytes"], live)
                row["macs"] += step.macs
                row["scratch_bytes"] = max(row["scratch_bytes"], step.scratch_bytes)
                continue
            marks = []
            if step.op.index in stage_ops:
                marks.append(f"patch {self.patch.spec.rows}x{self.patch.spec.cols}")
            for t in step.writes:
                kind = self.plan.overlap_kind(t)
                if kind == "patch":
                    marks.append("over stage input")
                elif kind:
                    marks.append(kind)
            if step.kernel and step.params.get("fused_add"):
                marks.append(f"fused ADD {step.params['fused_add']['op']}")
            row = {
                "index": step.op.index, "op": step.op.kind,
                "kernel": step.kernel.split(".")[0] if step.kernel else "view",
                "output_shape": list(g.t(step.op.outputs[0]).shape),
                "input_bytes": sum(g.t(t).nbytes for t in step.op.inputs
                                   if t >= 0 and not g.t(t).is_const),
                "output_bytes": sum(g.t(t).nbytes for t in step.op.outputs),
                "scratch_bytes": step.scratch_bytes,
                "live_bytes": live,
                "macs": step.macs,
                "marks": marks,
            }
            by_op[step.op.index] = row
            rows.append(row)
        return rows

    def summary(self) -> dict:
        """The plan's headline figures (stable keys: `mcunet plan --json`)."""
        p = self.patch
        return {
            "peak_sram_bytes": self.peak_sram_bytes,
            "arena_bytes": self.plan.arena_bytes,
            "stack_bytes": self.stack_bytes,
            "lower_bound_bytes": self.plan.lower_bound,
            "flash_bytes": self.flash_bytes,
            "macs": self.macs,
            "patch": str(p.spec) if p else "none",
            "patch_mac_overhead": round(p.mac_overhead, 4) if p else 0.0,
            "placement": self.plan.strategy,
        }


def load_graph(path: str | Path) -> Graph:
    return run_passes(read_tflite(path))


def lower_graph(graph: Graph):
    import mcunet.codegen.ops  # noqa: F401  (importing registers every op's lowering)
    from mcunet.codegen.step import LOWERINGS as registry, LowerContext

    ctx = LowerContext(graph)
    steps = []
    for op in graph.ops:
        fn = registry.get(op.kind)
        if fn is None:
            raise McunetError(f"unsupported operator {op.kind} at index {op.index}")
        steps.append(fn(op, ctx))
    return steps, ctx.consts


def overlap_candidates(graph: Graph, steps: list) -> list[Overlap]:
    """Where a step's output may share bytes with an input it reads for the last time:
    windowed kernels (conv, depthwise, pooling) over their dense int8 input at the offset
    their raster order allows, elementwise ADD in place."""
    from mcunet.codegen.step import TensorArg

    result = []
    for i, step in enumerate(steps):
        p = step.params
        ins = [a for a in step.args if isinstance(a, TensorArg) and a.const]
        outs = [a for a in step.args if isinstance(a, TensorArg) and not a.const]
        if len(outs) != 1 or outs[0].offset or any(a.offset for a in ins):
            continue
        out = graph.t(outs[0].tid)
        if step.kernel in ("depthwise_conv_inplace_s8.c.j2", "depthwise_conv_inplace_s8_dsp.c.j2"):
            result.append(Overlap(ins[0].tid, outs[0].tid, 0, i, i, "in-place", exact=True))
        elif "io_restrict" in p and len(ins) == 1:
            x = graph.t(ins[0].tid)
            if (x.dtype, out.dtype) != ("int8", "int8") or p["in_row"] != p["iw"] \
                    or p["out_row"] != p["ow"]:
                continue
            ic, oc = p.get("ic", p.get("c")), p.get("oc", p.get("c"))
            delta = window_max_delta(p["ih"], p["iw"], ic, p["oh"], p["ow"], oc, p["kh"],
                                     p["kw"], p["sh"], p["sw"], p["pad_top"], p["pad_left"],
                                     p.get("out_block", 1))
            result.append(Overlap(ins[0].tid, outs[0].tid, delta, i, i, "alias"))
        elif p.get("fused_add"):  # the sum goes over the residual (the last input)
            result.append(Overlap(ins[-1].tid, outs[0].tid, elementwise_max_delta(), i, i,
                                  "in-place"))
        elif step.kernel == "add_s8.c.j2" and not p["broadcast"]:
            for a in ins:
                if graph.t(a.tid).nbytes == out.nbytes:
                    result.append(Overlap(a.tid, outs[0].tid, elementwise_max_delta(), i, i,
                                          "in-place"))
    return result


def in_place_depthwise(graph: Graph, steps: list) -> list:
    """Depthwise layers that need less memory in place (their output over their input, one
    channel plane of scratch) than with the output offset a row ahead of the input: a copy of
    each such step switched to the in-place kernel."""
    from mcunet.codegen.step import ScratchArg, Step, TensorArg

    result = []
    for step in steps:
        p = step.params
        ins = [a for a in step.args if isinstance(a, TensorArg) and a.const]
        if (step.kernel == "depthwise_conv_s8.c.j2" and p["depth_multiplier"] == 1
                and p["in_row"] == p["iw"] and p["out_row"] == p["ow"] and len(ins) == 1
                and not any(a.offset for a in step.args if isinstance(a, TensorArg))):
            offset_cost = -window_max_delta(p["ih"], p["iw"], p["ic"], p["oh"], p["ow"], p["oc"],
                                            p["kh"], p["kw"], p["sh"], p["sw"], p["pad_top"],
                                            p["pad_left"], p.get("out_block", 1))
            plane = align(p["ih"] * p["iw"])
            if plane < offset_cost:
                step = Step(step.op, "depthwise_conv_inplace_s8.c.j2", dict(p, c=p["ic"]),
                            list(step.args) + [ScratchArg("int8_t")], plane, macs=step.macs,
                            trace=step.trace)
        result.append(step)
    return result


def plan_steps(graph: Graph, steps: list, extra: Sequence[Overlap] = (),
               effort: str = "full", fixed: int = 0) -> tuple[list, ArenaPlan]:
    """The best (order, plan) over the candidate operator orders of steps[fixed:] (a patch
    stage, the first `fixed` steps, runs patch after patch as it is)."""
    used = set(graph.inputs) | set(graph.outputs)
    for step in steps:
        used.update(step.reads, step.writes)
    sizes = {t: graph.t(t).nbytes for t in sorted(used) if not graph.t(t).is_const}
    best = None
    orders = [list(range(fixed)) + [fixed + i for i in o]
              for o in candidate_orders(steps[fixed:], sizes)]
    for order in orders:
        ordered = [steps[i] for i in order]
        plan = plan_arena(ordered, graph.inputs, graph.outputs, sizes,
                          overlap_candidates(graph, ordered) + list(extra),
                          effort=effort if len(orders) == 1 else "quick")
        if best is None or plan.arena_bytes < best[1].arena_bytes:
            best = (ordered, plan)
    if len(orders) > 1 and effort == "full":  # the full search only for the winning order
        ordered = best[0]
        best = (ordered, plan_arena(ordered, graph.inputs, graph.outputs, sizes,
                                    overlap_candidates(graph, ordered) + list(extra)))
    return best


def _finish(graph: Graph, steps: list, consts: list, plan: ArenaPlan, dsp: bool,
            stage: PatchStage | None) -> CompiledModel:
    # Kernels whose output overlaps their input must not promise the compiler otherwise.
    for ov, _ in plan.overlaps:
        if ov.kind == "alias":
            steps[ov.dst_first].params["io_restrict"] = ""
    return CompiledModel(graph=graph, steps=steps, consts=consts, plan=plan, patch=stage)


def compile_graph(graph: Graph, patch: str = "auto", dsp: bool = False,
                  max_overhead: float = DEFAULT_MAX_OVERHEAD) -> CompiledModel:
    """patch: 'auto' (choose a patch stage when it lowers the peak), 'none' or 'RxC@LAYER'.
    dsp: choose the Cortex-M DSP (SMLAD) kernel variants where one exists."""
    from mcunet.codegen.fuse import fuse_residual_adds

    spec = parse_patch(patch)
    steps, consts = lower_graph(graph)
    steps = fuse_residual_adds(graph, steps)

    def finish_steps(s: list) -> list:
        s = in_place_depthwise(graph, s)  # first: the DSP variants include in-place ones
        if dsp:
            from mcunet.codegen.dispatch import choose_variants
            choose_variants(s, dsp=True)
        return s

    if spec == "none":
        ordered, plan = plan_steps(graph, finish_steps(steps))
        return _finish(graph, ordered, consts, plan, dsp, None)
    if isinstance(spec, PatchSpec):
        pgraph, psteps, stage = apply_patches(graph, steps, spec)
        ordered, plan = plan_steps(pgraph, finish_steps(psteps), [stage.overlap],
                                   fixed=stage.num_steps)
        return _finish(pgraph, ordered, consts, plan, dsp, stage)
    # auto: the layer-by-layer plan, unless some patch stage needs clearly less.
    best_steps, best_plan = plan_steps(graph, finish_steps(list(steps)))
    best = (graph, best_steps, best_plan, None)
    # Rank every candidate stage with a quick plan, then plan the best few in full.
    ranked = []
    for spec_k, (pgraph, psteps, stage) in patch_candidates(graph, steps, max_overhead):
        _, quick = plan_steps(pgraph, finish_steps(psteps), [stage.overlap], effort="quick",
                              fixed=stage.num_steps)
        ranked.append((quick.arena_bytes, stage.mac_overhead, str(spec_k), pgraph, psteps, stage))
    ranked.sort(key=lambda r: r[:3])
    for *_, pgraph, psteps, stage in ranked[:AUTO_FINALISTS]:
        ordered, plan = plan_steps(pgraph, finish_steps(psteps), [stage.overlap],
                                   fixed=stage.num_steps)
        if plan.arena_bytes < best[2].arena_bytes * (1 - AUTO_MIN_SAVING):
            best = (pgraph, ordered, plan, stage)
    return _finish(best[0], best[1], consts, best[2], dsp, best[3])


def compile_model(path: str | Path, patch: str = "auto", dsp: bool = False,
                  max_overhead: float = DEFAULT_MAX_OVERHEAD) -> CompiledModel:
    return compile_graph(load_graph(path), patch=patch, dsp=dsp, max_overhead=max_overhead)

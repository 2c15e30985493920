"""The pipeline: .tflite -> graph -> passes -> lowered steps -> rewrites -> arena plan -> C.

The driver layer: it runs the core (graph, passes, patches, the planner) and the code
generator (lowering, kernel registry, rewrites, rendering), and checks every plan it makes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .budget import Budget
from .codegen.library import Library, LibraryOptions, render_library
from .codegen.lower import lower_graph
from .codegen.rewrites import choose_variants, fuse_residual_adds, in_place_depthwise
from .footprint import Footprint
from .frontend import read_tflite
from .graph import Graph
from .layers import ConvLayer
from .memory import ArenaPlan, Overlap, plan_arena, verify
from .overlaps import overlap_candidates
from .passes import run_passes
from .patch import DEFAULT_MAX_OVERHEAD, PatchSpec, PatchStage, apply_patches, parse_patch
from .patch import candidates as patch_candidates
from .schedule import candidate_orders
from .step import ARM_DSP, ConstArray, Step
from .target import Target, get_target

PATCH_CHOICES = ("auto", "none", "RxC@LAYER")
AUTO_FINALISTS = 3  # patch stages planned in full after the quick ranking
AUTO_MIN_SAVING = 0.02  # a patch stage must save this share of the peak to be worth its code


@dataclass(frozen=True)
class CompiledModel:
    """A model compiled for its target: steps, flash contents and the arena plan. Frozen:
    every figure (peak SRAM with the target's stack, flash, MACs) is fixed by what it was
    built from; the ones that need the rendered library compiled (the stack bound, the code
    bytes) are computed on first use."""
    graph: Graph
    steps: tuple[Step, ...]  # one per scheduled op (a patch stage's op once per patch)
    consts: tuple[ConstArray, ...]  # the flash contents
    plan: ArenaPlan
    target: Target
    patch: PatchStage | None = None  # the patch-based stage, when there is one
    options: LibraryOptions = LibraryOptions()  # the C names and the arena's placement
    budget: Budget | None = None  # what the model was checked against (mcunet.compile)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def flash_bytes(self) -> int:
        """All constant data: weights, biases, requantisation constants, tables."""
        return sum(c.nbytes for c in self.consts)

    @property
    def footprint(self) -> Footprint | None:
        """The library's deepest stack and code bytes on the target, where the target can
        measure them (mcunet.footprint)."""
        if "footprint" not in self._cache:
            self._cache["footprint"] = self.target.footprint(self.library().files) \
                if self.target.footprint is not None else None
        return self._cache["footprint"]

    @property
    def stack_bytes(self) -> int:
        """The deepest stack of the generated code on the target core, where the target
        bounds it (Arm cores: from -fstack-usage); part of the RAM the library needs."""
        if self.target.footprint is None or not self.target.bounds_stack:
            return 0
        return self.footprint.stack_bytes

    @property
    def code_bytes(self) -> int | None:
        """The library's code and its constants other than the weights, on the target."""
        return self.footprint.code_bytes if self.footprint is not None else None

    @property
    def flash_total_bytes(self) -> int | None:
        """Everything the library puts in flash: the constant data and the code."""
        return None if self.code_bytes is None else self.flash_bytes + self.code_bytes

    @property
    def peak_sram_bytes(self) -> int:
        """All RAM the generated library needs during inference: the arena holds every
        activation and every kernel's scratch, the library has no other buffers, and where
        the target bounds it the kernels' stack is added."""
        return self.plan.arena_bytes + self.stack_bytes

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    @property
    def dsp(self) -> bool:
        """Some step runs a kernel of the Arm DSP extension."""
        return any(s.kernel is not None and s.kernel.isa == ARM_DSP for s in self.steps)

    def library(self) -> Library:
        """The generated C library (rendered once)."""
        if "library" not in self._cache:
            self._cache["library"] = render_library(self.graph, self.steps, self.consts,
                                                    self.plan, self.options)
        return self._cache["library"]

    def write(self, out: str | Path) -> list[Path]:
        """Write the C library into the folder `out`; returns the files written."""
        return self.library().write(out)

    @property
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
            if isinstance(step.layer, ConvLayer) and step.layer.fused_add is not None:
                marks.append(f"fused ADD {step.layer.fused_add.op}")
            row = {
                "index": step.op.index, "op": step.op.kind,
                "kernel": step.kernel.name if step.kernel else "view",
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
        fp = self.footprint
        return {
            "target": self.target.name,
            "kernels": "dsp" if self.dsp else "portable",
            "peak_sram_bytes": self.peak_sram_bytes,
            "arena_bytes": self.plan.arena_bytes,
            "stack_bytes": self.stack_bytes,
            "lower_bound_bytes": self.plan.lower_bound,
            "flash_bytes": self.flash_bytes,
            "flash_code_bytes": self.code_bytes,
            "flash_total_bytes": self.flash_total_bytes,
            "footprint_source": fp.source if fp is not None else None,
            "macs": self.macs,
            "patch": str(p.spec) if p else "none",
            "patch_mac_overhead": round(p.mac_overhead, 4) if p else 0.0,
            "placement": self.plan.strategy,
        }


def load_graph(path: str | Path) -> Graph:
    return run_passes(read_tflite(path))


def plan_steps(graph: Graph, steps: list[Step], extra: Sequence[Overlap] = (),
               effort: str = "full", fixed: int = 0) -> tuple[list[Step], ArenaPlan]:
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


def _finish(graph: Graph, steps: list[Step], consts: list[ConstArray], plan: ArenaPlan,
            target: Target, stage: PatchStage | None, options: LibraryOptions) -> CompiledModel:
    verify(plan)  # a plan that breaks the planner's rules is a bug: fail here, not on a board
    return CompiledModel(graph=graph, steps=tuple(steps), consts=tuple(consts), plan=plan,
                         target=target, patch=stage, options=options)


def compile_graph(graph: Graph, patch: str = "auto", target: Target | str | None = None,
                  max_overhead: float = DEFAULT_MAX_OVERHEAD,
                  options: LibraryOptions = LibraryOptions()) -> CompiledModel:
    """patch: 'auto' (choose a patch stage when it lowers the peak), 'none' or 'RxC@LAYER'.
    target: the core (mcunet.target.TARGETS name or a Target; default: the host), whose
    instruction sets choose the kernel variants (the DSP ones on ARMv7E-M); options: the C
    library's names and arena placement."""
    target = get_target(target)
    spec = parse_patch(patch)
    steps, consts = lower_graph(graph)
    steps = fuse_residual_adds(graph, steps)

    def finish_steps(s: list[Step]) -> list[Step]:
        # In-place depthwise first: the DSP variants include in-place ones.
        return choose_variants(in_place_depthwise(graph, s), target.isas)

    if spec == "none":
        ordered, plan = plan_steps(graph, finish_steps(steps))
        return _finish(graph, ordered, consts, plan, target, None, options)
    if isinstance(spec, PatchSpec):
        pgraph, psteps, stage = apply_patches(graph, steps, spec)
        ordered, plan = plan_steps(pgraph, finish_steps(psteps), [stage.overlap],
                                   fixed=stage.num_steps)
        return _finish(pgraph, ordered, consts, plan, target, stage, options)
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
    return _finish(best[0], best[1], consts, best[2], target, best[3], options)


def compile_model(path: str | Path, patch: str = "auto", target: Target | str | None = None,
                  max_overhead: float = DEFAULT_MAX_OVERHEAD,
                  options: LibraryOptions = LibraryOptions()) -> CompiledModel:
    return compile_graph(load_graph(path), patch=patch, target=target, max_overhead=max_overhead,
                         options=options)

"""The pipeline: .tflite -> graph -> passes -> lowered steps -> rewrites -> arena plan -> C.

The driver layer: it runs the core (graph, passes, patches, the planner) and the code
generator (lowering, kernel registry, rewrites, rendering), and checks every plan it makes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from .budget import Budget
from .codegen import kernels
from .codegen.library import Library, LibraryOptions, render_library
from .codegen.lower import lower_graph
from .codegen.rewrites import (fuse_residual_adds, in_place_depthwise,
                               leaner_variant, widen_filters)
from .footprint import Footprint
from .frontend import read_tflite
from .graph import Graph
from .layers import ConvLayer
from .errors import McunetError
from .memory import ArenaPlan, Overlap, plan_arena, verify
from .overlaps import overlap_candidates, stream_overlaps
from .passes import run_passes
from .patch import DEFAULT_MAX_OVERHEAD, PatchSpec, RegionSpec, parse_patch, patch_section
from .schedule import candidate_orders
from .stream import stream_section
from .selection import choose_regions
from .tiling import NotTileable, PatchStage, cuts, locate
from .work import MARGIN, work as steps_work
from .step import ARM_DSP, ConstArray, Step
from .target import Target, get_target
from .costmodel import core_of
from .tune import Choices, choose_candidates, measurements
from .training import prepare

PATCH_CHOICES = ("auto", "none", "RxC@LAYER")
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
    # Sections that run a region at a time (patch by patch or streamed), in step order.
    stages: tuple[PatchStage, ...] = ()
    options: LibraryOptions = LibraryOptions()  # the C names and the arena's placement
    budget: Budget | None = None  # what the model was checked against (mcunet.compile)
    # With stages: the layer-by-layer plan `auto` weighed them against (for the figure and
    # the reports); None where it was not computed (explicit --patch sections).
    layer_by_layer: CompiledModel | None = field(default=None, repr=False, compare=False)
    # A --train build (mcunet.training.Training): what it updates, its static RAM, its C.
    training: object | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def patch(self) -> PatchStage | None:
        """The first patch-based or streamed stage, if any."""
        return self.stages[0] if self.stages else None

    @property
    def schedule(self) -> str:
        """The stages as --patch writes them ('none' when every layer runs whole)."""
        return ",".join(str(s.spec) for s in self.stages) or "none"

    @property
    def mac_overhead(self) -> float:
        """Extra MACs of the stages (recomputed halos) as a fraction of the model's."""
        return sum(s.patched_macs - s.stage_macs for s in self.stages) / max(
            self.macs - sum(s.patched_macs - s.stage_macs for s in self.stages), 1)

    @property
    def extra_calls(self) -> int:
        """Kernel calls the stages add to one per layer."""
        return sum(s.extra_calls for s in self.stages)

    @property
    def overhead(self) -> float:
        """The stages' estimated extra instructions as a fraction of the model's layer by
        layer (mcunet.work, with its margin): what --max-overhead bounds."""
        if not self.stages:
            return 0.0
        return sum(s.extra_work for s in self.stages) / max(self.stages[0].base_work, 1.0)

    @property
    def flash_bytes(self) -> int:
        """All constant data: weights, biases, requantisation constants, tables."""
        return sum(c.nbytes for c in self.consts)

    @property
    def footprint(self) -> Footprint | None:
        """The library's deepest stack and code bytes on the target, where the target can
        measure them (mcunet.footprint)."""
        if not self.measures_footprint:
            return None
        if "footprint" not in self._cache:
            self._cache["footprint"] = self.target.footprint(self.library().files)
        return self._cache["footprint"]

    @property
    def measures_footprint(self) -> bool:
        """Whether the footprint is measured: always on an Arm core (its stack is part of
        the RAM figure); on the host only when a flash budget asks for the code bytes. The
        host's x86 code says little about a microcontroller's flash, and measuring it
        compiles every kernel of the library (seconds for a network of a hundred layers)."""
        if self.target.footprint is None:
            return False
        return self.target.bounds_stack or (self.budget is not None
                                            and self.budget.flash_bytes is not None)

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
        return self.plan.arena_bytes + self.stack_bytes + self.training_static_bytes

    @property
    def training_static_bytes(self) -> int:
        """A --train build's static RAM beside the arena (the updated parameters, their
        float32 updates and momenta, the backward's buffers): 0 for inference."""
        return self.training.static_bytes if self.training is not None else 0

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
                                                    self.plan, self.options, self.training)
        return self._cache["library"]

    def write(self, out: str | Path) -> list[Path]:
        """Write the C library into the folder `out`; returns the files written."""
        return self.library().write(out)

    def stage_of(self, index: int) -> PatchStage | None:
        for s in self.stages:
            if s.start <= index < s.end:
                return s
        return None

    @property
    def layers(self) -> list[dict]:
        """Per-op figures for reports and `mcunet plan --json`. A layer of a patch-based or
        streamed stage runs once per patch or band: its row sums the MACs and shows the
        busiest one."""
        rows: list[dict] = []
        by_op: dict[int, dict] = {}
        g = self.graph
        for i, step in enumerate(self.steps):
            live = self.plan.live_bytes(i)
            stage = self.stage_of(i)
            row = by_op.get(step.op.index)
            if row is not None and stage is not None:
                row["live_bytes"] = max(row["live_bytes"], live)
                row["macs"] += step.macs
                row["scratch_bytes"] = max(row["scratch_bytes"], step.scratch_bytes)
                continue
            marks = []
            if stage is not None:
                spec = stage.spec
                marks.append(f"patch {spec.rows}x{spec.cols}" if stage.kind == "patch" else
                             "stream" + (f" {spec.rows} rows" if spec.rows > 1 else ""))
            for t in step.writes:
                kind = self.plan.overlap_kind(t)
                if kind == "patch":
                    marks.append("over stage input")
                elif kind == "stream":
                    marks.append("over streamed input")
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
                "stage": str(stage.spec) if stage is not None else None,
            }
            by_op[step.op.index] = row
            rows.append(row)
        return rows

    def summary(self) -> dict:
        """The plan's headline figures (stable keys: `mcunet plan --json`)."""
        fp = self.footprint
        return {
            "target": self.target.name,
            "kernels": "dsp" if self.dsp else "portable",
            "arithmetic": self.options.arithmetic,
            "peak_sram_bytes": self.peak_sram_bytes,
            "arena_bytes": self.plan.arena_bytes,
            "stack_bytes": self.stack_bytes,
            "lower_bound_bytes": self.plan.lower_bound,
            "flash_bytes": self.flash_bytes,
            "flash_code_bytes": self.code_bytes,
            "flash_total_bytes": self.flash_total_bytes,
            "footprint_source": fp.source if fp is not None else None,
            "macs": self.macs,
            "patch": self.schedule,
            "patch_mac_overhead": round(self.mac_overhead, 4),
            "overhead": round(self.overhead, 4),
            "extra_calls": self.extra_calls,
            "placement": self.plan.strategy,
            "stages": [stage_summary(s) for s in self.stages],
            **({"training": self.training.summary(self)} if self.training is not None else {}),
        }


def stage_summary(stage: PatchStage) -> dict:
    return {"spec": str(stage.spec), "kind": stage.kind, "ops": list(stage.ops),
            "layers": stage.stage_steps, "steps": stage.num_steps,
            "mac_overhead": round(stage.mac_overhead, 4),
            "blame": [{"op": op, "share": round(share, 3)} for op, share in stage.blame]}


def load_graph(path: str | Path) -> Graph:
    return run_passes(read_tflite(path))


@dataclass(frozen=True)
class _Unit:
    """A stage as one step, for ordering: its steps run as they are, one after another."""
    reads: list[int]
    writes: list[int]
    scratch_bytes: int = 0
    view_of: int | None = None


def plane_depthwise_in_patches(originals: int, steps: list[Step]) -> list[Step]:
    """Depthwise layers of a patch, on per-patch buffers only (tensor ids from `originals` on),
    onto the plane kernel where the channels are not in fours: with the DSP extension the
    plane kernel is then the faster (the other DSP depthwise takes the last ic % 4 channels
    one by one), and a patch's planes are small. The layer-by-layer plan takes it where it
    saves memory, which would otherwise make patches look slow."""
    plane = kernels.portable(kernels.DEPTHWISE_IN_PLACE)
    result = []
    for step in steps:
        if (step.kernel is kernels.DEPTHWISE_CONV_S8 and step.whole_tensors
                and all(a.tid >= originals for a in step.inputs + step.outputs)
                and kernels.in_place_dsp_applies(step.layer)
                and step.layer.window.ic % 4):
            step = replace(step, kernel=plane)
        result.append(step)
    return result


def stage_overlaps(graph: Graph, steps: Sequence[Step], stage: PatchStage) -> list[Overlap]:
    """The overlaps a stage allows between the tensors it stores whole: T over the part of X
    that later patches skip, or every streamed tensor over the earlier ones."""
    if stage.kind == "patch":
        return [replace(stage.overlap, src_last=stage.end - 1, dst_first=stage.start)]
    return stream_overlaps(graph, steps, stage.start, stage.end, stage.whole,
                           [stage.t, *graph.outputs])


def plan_steps(graph: Graph, steps: list[Step], stages: Sequence[PatchStage] = (),
               extra: Sequence[Overlap] = (), effort: str = "full",
               hints: dict[int, int] | None = None, keep: Sequence[int] = ()
               ) -> tuple[list[Step], ArenaPlan, tuple[PatchStage, ...]]:
    """The best (order, plan) over the candidate operator orders of the steps; each stage
    (patch-based or streamed) runs as one unit, its steps in their own order. Returns the
    stages at their places in the chosen order. keep: tensors that stay live to the end, as
    the outputs do (what a training step reads after the forward pass)."""
    outputs = list(graph.outputs) + [t for t in keep if t not in graph.outputs]
    used = set(graph.inputs) | set(outputs)
    for step in steps:
        used.update(step.reads, step.writes)
    sizes = {t: graph.t(t).nbytes for t in sorted(used) if not graph.t(t).is_const}
    stages = sorted(stages, key=lambda s: s.start)
    units: list = []  # (first step, last step + 1, stage or None)
    i = 0
    for stage in stages:
        units += [(j, j + 1, None) for j in range(i, stage.start)]
        units.append((stage.start, stage.end, stage))
        i = stage.end
    units += [(j, j + 1, None) for j in range(i, len(steps))]
    unit_steps = [steps[a] if st is None else _Unit([st.x], [st.t]) for a, _, st in units]
    own = {id(st): stage_overlaps(graph, steps, st) for st in stages}
    best = None
    orders = candidate_orders(unit_steps, sizes)
    for order in orders:
        ordered, placed, extra_here = [], [], list(extra)
        for u in order:
            a, b, st = units[u]
            if st is not None:
                shift = len(ordered) - st.start
                placed.append(replace(st, start=len(ordered)))
                extra_here += [replace(ov, src_last=ov.src_last + shift,
                                       dst_first=ov.dst_first + shift) for ov in own[id(st)]]
            ordered += steps[a:b]
        plan = plan_arena(ordered, graph.inputs, outputs, sizes,
                          overlap_candidates(graph, ordered) + extra_here,
                          effort=effort if len(orders) == 1 else "quick", hints=hints)
        if best is None or plan.arena_bytes < best[1].arena_bytes:
            best = (ordered, plan, tuple(placed), extra_here)
    if len(orders) > 1 and effort == "full":  # the full search only for the winning order
        ordered, _, placed, extra_here = best
        best = (ordered, plan_arena(ordered, graph.inputs, outputs, sizes,
                                    overlap_candidates(graph, ordered) + extra_here,
                                    hints=hints), placed, extra_here)
    return best[0], best[1], best[2]


LEAN_ROUNDS = 3  # rounds of leaner variants at the peak (each round plans once more)


def plan_lean(graph: Graph, steps: list[Step], stages: Sequence[PatchStage] = (),
              hints: dict[int, int] | None = None, keep: Sequence[int] = ()
              ) -> tuple[list[Step], ArenaPlan, tuple[PatchStage, ...]]:
    """plan_steps with the fastest kernels, then, round by round, the kernels whose scratch
    sits at the arena's peak on a leaner variant (less scratch, same instruction set), kept
    while the arena shrinks: peak SRAM first, then speed. A variant swap keeps every step at
    its index, so the stages stay where they are."""
    best = plan_steps(graph, steps, stages, hints=hints, keep=keep)
    for _ in range(LEAN_ROUNDS):
        ordered, plan, _ = best
        leaner = {}
        for i, step in enumerate(ordered):
            if step.scratch_bytes and plan.live_bytes(i) > plan.arena_bytes - step.scratch_bytes:
                lean = leaner_variant(step)
                if lean is not None:
                    leaner[id(step)] = lean
        if not leaner:
            break
        before = steps
        steps = [leaner.get(id(s), s) for s in steps]
        candidate = plan_steps(graph, steps, stages, hints=hints, keep=keep)
        if candidate[1].arena_bytes >= plan.arena_bytes:
            break
        best = candidate
        # A swap the smaller arena did not need (another step's scratch set the peak) is
        # taken back: the faster kernel stays.
        for i, step in enumerate(before):
            if id(step) in leaner and len(leaner) > 1:
                trial = steps[:i] + [step] + steps[i + 1:]
                kept = plan_steps(graph, trial, stages, hints=hints, keep=keep)
                if kept[1].arena_bytes <= best[1].arena_bytes:
                    steps, best = trial, kept
    return best


def _finish(graph: Graph, steps: list[Step], consts: list[ConstArray], plan: ArenaPlan,
            target: Target, stages: Sequence[PatchStage], options: LibraryOptions
            ) -> CompiledModel:
    verify(plan)  # a plan that breaks the planner's rules is a bug: fail here, not on a board
    return CompiledModel(graph=graph, steps=tuple(steps), consts=tuple(consts), plan=plan,
                         target=target, stages=tuple(stages), options=options)


def apply_regions(graph: Graph, steps: list[Step], specs: Sequence[RegionSpec]
                  ) -> tuple[Graph, list[Step], list[PatchStage]]:
    """Rewrite each named section (patch grid or stream); they must not overlap."""
    cut_list = cuts(graph, steps)
    located = sorted(((locate(graph, steps, spec, cut_list), spec) for spec in specs),
                     key=lambda r: r[0].lo)
    for (a, sa), (b, sb) in zip(located, located[1:]):
        if b.lo < a.hi:
            raise McunetError(f"--patch: {sa} and {sb} overlap")
    stages = []
    for sec, spec in reversed(located):  # from the back: earlier positions stay valid
        if isinstance(spec, PatchSpec):
            _, th, tw, _ = graph.t(sec.t).shape
            if spec.rows > th or spec.cols > tw:
                raise McunetError(f"--patch {spec}: the stage output is {th}x{tw}, smaller "
                                  f"than the {spec.rows}x{spec.cols} grid")
            graph, steps, stage = patch_section(graph, steps, sec, spec)
        else:
            graph, steps, stage = stream_section(graph, steps, sec, spec)
        stages.append(stage)
    stages.reverse()
    shift = 0
    for stage in stages:
        stage.start += shift
        shift += stage.num_steps - stage.stage_steps
    model_macs = sum(s.macs for s in steps) - sum(s.patched_macs - s.stage_macs for s in stages)
    for stage in stages:
        stage.model_macs = model_macs
    return graph, steps, stages


def estimate_work(layer_steps: list[Step], steps: list[Step], stages: Sequence[PatchStage]) -> None:
    """Each stage's estimated extra instructions (mcunet.work) over its layers run whole, with
    the kernels each gets (a stage's layers may get other variants), times the margin where
    it adds work; and the whole model's layer by layer."""
    base = steps_work(layer_steps)
    for stage in stages:
        ops = set(stage.ops)
        extra = steps_work(steps[stage.start:stage.end]) - \
            steps_work([s for s in layer_steps if s.op.index in ops])
        stage.work = extra * MARGIN if extra > 0 else extra
        stage.base_work = base


def compile_graph(graph: Graph, patch: str = "auto", target: Target | str | None = None,
                  max_overhead: float = DEFAULT_MAX_OVERHEAD,
                  sram_budget: int | None = None,
                  options: LibraryOptions = LibraryOptions(),
                  choices: Choices | None = None, training=None,
                  flash_budget: int | None = None) -> CompiledModel:
    """_compile_graph (the arguments are described there), then, with a flash budget (all
    of the model's flash: constants and code), the convolutions onto the variant with an
    int16 filter (kernels.WIDER_FILTER: faster, twice the filter's bytes) as far as the
    budget has room, the most MACs per extra byte first: the plan is the same (the variants
    have the same scratch and overlap). Without a budget, and in a --train build (whose
    harness reads the trained layers' original filters by symbol), the filters stay int8."""
    model = _compile_graph(graph, patch=patch, target=target, max_overhead=max_overhead,
                           sram_budget=sram_budget, options=options, choices=choices,
                           training=training)
    if flash_budget is None or training is not None or \
            not any(s.kernel in kernels.WIDER_FILTER for s in model.steps):
        return model
    room = flash_budget - model.flash_bytes - (model.code_bytes or 0)
    wide = widen(model, room)
    if wide is model or (wide.flash_total_bytes or wide.flash_bytes) > flash_budget:
        return model  # (the wide kernels' code grew past the budget: int8 filters)
    if model.layer_by_layer is not None:
        wide = replace(wide, layer_by_layer=widen(model.layer_by_layer, room))
    return wide


def widen(model: CompiledModel, room: int) -> CompiledModel:
    """The model with its filters widened where `room` extra bytes of flash allow
    (codegen.rewrites.widen_filters); the model itself where none is."""
    steps, consts = widen_filters(list(model.steps), list(model.consts), room)
    if all(a is b for a, b in zip(steps, model.steps)):
        return model
    return replace(model, steps=tuple(steps), consts=tuple(consts), _cache={})


def _compile_graph(graph: Graph, patch: str = "auto", target: Target | str | None = None,
                   max_overhead: float = DEFAULT_MAX_OVERHEAD,
                   sram_budget: int | None = None,
                   options: LibraryOptions = LibraryOptions(),
                   choices: Choices | None = None, training=None) -> CompiledModel:
    """patch: 'auto' (patch-based and streamed sections where they lower the peak), 'none'
    or explicit sections ('RxC@LAYER', 'stream@FIRST-LAST', ...: mcunet.patch.parse_patch).
    target: the core (mcunet.target.TARGETS name or a Target; default: the host), whose
    instruction sets choose the kernel variants (the DSP ones on ARMv7E-M). sram_budget:
    with 'auto', the fastest plan whose arena fits it (layer by layer wherever that fits),
    rather than the smallest. options: the C library's names, arena placement and arithmetic
    (TFLite's reference or TF Lite Micro's). choices: how each layer's kernel variant and
    blocking are picked (mcunet.tune; default: measured where the target core's tune cache has
    the layer, else the registry's rule). training: a mcunet.training.Training (--train): its
    head step replaces the model's, the tensors its step reads after the forward pass stay
    live to the end, and the plan is layer by layer (patch is ignored)."""
    target = get_target(target)
    spec = parse_patch(patch)
    steps, consts = lower_graph(graph, options.arithmetic)
    steps = fuse_residual_adds(graph, steps)
    if training is not None:
        steps, consts = training.rewrite(graph, steps, consts)
        spec = "none"

    if choices is None:
        choices = Choices(measurements(core_of(target.name)))

    def finish_steps(s: list[Step], g: Graph = graph) -> list[Step]:
        # In-place depthwise first: the DSP variants include in-place ones.
        s = in_place_depthwise(g, s)
        if ARM_DSP in target.isas:
            s = plane_depthwise_in_patches(len(graph.tensors), s)
        return choose_candidates(s, target.isas, choices)

    layer_steps = finish_steps(list(steps))
    if spec == "none":
        keep = training.keep if training is not None else ()
        ordered, plan, _ = plan_lean(graph, layer_steps, keep=keep)
        return replace(_finish(graph, ordered, consts, plan, target, (), options),
                       training=training)
    if spec != "auto":
        specs = spec if isinstance(spec, tuple) else (spec,)
        pgraph, psteps, stages = apply_regions(graph, steps, specs)
        psteps = finish_steps(psteps, pgraph)
        estimate_work(layer_steps, psteps, stages)
        ordered, plan, placed = plan_lean(pgraph, psteps, stages)
        return _finish(pgraph, ordered, consts, plan, target, placed, options)
    best_steps, best_plan, _ = plan_lean(graph, layer_steps)
    layerwise = _finish(graph, best_steps, consts, best_plan, target, (), options)
    if sram_budget is not None and best_plan.arena_bytes <= sram_budget:
        # Layer by layer fits: nothing runs faster (stages only add halos and calls), so no
        # stage is searched for.
        return layerwise
    plans = [(graph, best_steps, best_plan, ())]
    for candidate, hints in choose_regions(graph, steps, finish_steps, max_overhead,
                                           sram_budget):
        if not candidate:
            continue
        pgraph, psteps, stages = apply_regions(graph, steps, candidate)
        psteps = finish_steps(psteps, pgraph)
        estimate_work(layer_steps, psteps, stages)
        ordered, plan, placed = plan_lean(pgraph, psteps, stages, hints=hints)
        plans.append((pgraph, ordered, plan, placed))
    def work(p) -> int:
        return sum(s.extra_work for s in p[3])

    # A plan with stages must save a few percent to be worth its code; with a budget, the
    # least work that fits wins, else the smallest arena.
    worth = [p for p in plans
             if not p[3] or p[2].arena_bytes < best_plan.arena_bytes * (1 - AUTO_MIN_SAVING)]
    fits = [p for p in worth if sram_budget is not None and p[2].arena_bytes <= sram_budget]
    best = min(fits, key=lambda p: (work(p), p[2].arena_bytes)) if fits else \
        min(worth, key=lambda p: (p[2].arena_bytes, work(p)))
    if not best[3]:
        return layerwise
    return replace(_finish(best[0], best[1], consts, best[2], target, best[3], options),
                   layer_by_layer=layerwise)


def compile_model(path: str | Path, patch: str = "auto", target: Target | str | None = None,
                  max_overhead: float = DEFAULT_MAX_OVERHEAD,
                  sram_budget: int | None = None,
                  options: LibraryOptions = LibraryOptions(),
                  choices: Choices | None = None, train: str | None = None,
                  flash_budget: int | None = None) -> CompiledModel:
    """compile_graph of a .tflite file; train: a --train scheme (mcunet.training)."""
    graph = load_graph(path)
    training = None
    if train is not None:
        training = prepare(graph, train, options)
    return compile_graph(graph, patch=patch, target=target, max_overhead=max_overhead,
                         sram_budget=sram_budget, options=options, choices=choices,
                         training=training, flash_budget=flash_budget)

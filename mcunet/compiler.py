"""The pipeline: .tflite -> graph -> passes -> lowered steps -> arena plan -> C library."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import McunetError
from .frontend import read_tflite
from .graph import Graph
from .memory import ArenaPlan, plan_arena
from .passes import run_passes

PATCH_CHOICES = ("none",)


@dataclass
class CompiledModel:
    graph: Graph
    steps: list  # codegen.step.Step, one per scheduled op
    consts: list  # codegen.step.ConstArray, the flash contents
    plan: ArenaPlan

    @property
    def flash_bytes(self) -> int:
        return sum(c.nbytes for c in self.consts)

    @property
    def peak_sram_bytes(self) -> int:
        """All RAM the generated library needs during inference: the arena holds every
        activation and every kernel's scratch, and the library has no other buffers."""
        return self.plan.arena_bytes

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    def library(self):
        from codegen.library import render_library
        return render_library(self.graph, self.steps, self.consts, self.plan)

    def layers(self) -> list[dict]:
        """Per-step figures for reports and `mcunet plan --json`."""
        rows = []
        for i, step in enumerate(self.steps):
            g = self.graph
            rows.append({
                "index": step.op.index, "op": step.op.kind,
                "kernel": step.kernel.split(".")[0] if step.kernel else "view",
                "output_shape": list(g.t(step.op.outputs[0]).shape),
                "input_bytes": sum(g.t(t).nbytes for t in step.reads),
                "output_bytes": sum(g.t(t).nbytes for t in step.op.outputs),
                "scratch_bytes": step.scratch_bytes,
                "live_bytes": self.plan.live_bytes(i),
                "macs": step.macs,
            })
        return rows


def load_graph(path: str | Path) -> Graph:
    return run_passes(read_tflite(path))


def lower_graph(graph: Graph):
    import codegen.ops  # noqa: F401  (importing registers every op's lowering)
    from codegen.step import LOWERINGS as registry, LowerContext

    ctx = LowerContext(graph)
    steps = []
    for op in graph.ops:
        fn = registry.get(op.kind)
        if fn is None:
            raise McunetError(f"unsupported operator {op.kind} at index {op.index}")
        steps.append(fn(op, ctx))
    return steps, ctx.consts


def compile_graph(graph: Graph, patch: str = "none") -> CompiledModel:
    if patch not in PATCH_CHOICES:
        raise McunetError(f"--patch {patch} is not available yet; choose one of "
                          f"{', '.join(PATCH_CHOICES)}")
    steps, consts = lower_graph(graph)
    sizes = {t.id: t.nbytes for t in graph.activations()}
    plan = plan_arena(steps, graph.inputs, graph.outputs, sizes)
    return CompiledModel(graph=graph, steps=steps, consts=consts, plan=plan)


def compile_model(path: str | Path, patch: str = "none") -> CompiledModel:
    return compile_graph(load_graph(path), patch=patch)

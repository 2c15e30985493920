"""`--tune`: each layer's kernel candidates measured on the emulated board of its core.

Round r builds the model layer by layer with every untuned layer on its r-th candidate
(mcunet.tune.candidates; a layer with fewer stays on its last) as a profile build, runs one
row under QEMU and reads each layer's instructions from the marks around it. After as many
rounds as the longest candidate list, each layer's measured best is cached by its signature
(mcunet.tune.Measurements), which every later compile for that core reads.

Layers inside a patch stage or stream are measured as whole layers: a stage's steps run in
one span between marks, so their tiles are not measured one by one; they take the
registry rule's choice (a stage tile's signature differs from the whole layer's).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from mcunet.compiler import compile_graph
from mcunet.costmodel import MEASURED_ON, STAND_IN, core_of
from mcunet.errors import McunetError
from mcunet.host import random_inputs
from mcunet.tune import Candidate, Choices, Measurements, candidates, estimated_best, signature

from . import Board, get_board
from .firmware import run_on_board, spans_alone


@dataclass
class TuneReport:
    """What a tune found: per tuned layer, the measured best beside the registry rule's pick
    (what a compile without measurements runs) and the fitted cost model's."""
    board: str
    rounds: int = 0
    seconds: float = 0.0
    layers: list[dict] = field(default_factory=list)  # op, kernel, best, rule, estimated, counts

    def agreed(self, pick: str) -> int:
        return sum(1 for r in self.layers if r["best"] == r[pick])

    def saved(self, pick: str = "rule") -> int:
        """Instructions the measured choices save over the pick's, summed over the layers
        (a pick that never ran alone, moved to a leaner variant by the plan, is not counted)."""
        return sum(r["counts"][r[pick]] - r["counts"][r["best"]] for r in self.layers
                   if r[pick] in r["counts"])

    def summary(self) -> str:
        if not self.layers:
            return f"tune: every layer with a choice was measured on {self.board} before (cache)"
        n = len(self.layers)
        return (f"tuned {n} layer(s) on {self.board} in {self.rounds} run(s), {self.seconds:.1f} s; "
                f"measured best = the registry rule's pick on {self.agreed('rule')} of {n}, the "
                f"cost model's on {self.agreed('estimated')} of {n}; the measured choices save "
                f"{self.saved('rule'):,} instructions per inference over the rule's "
                f"({self.saved('estimated'):,} over the cost model's)")


def tuning_board(target_name: str) -> Board:
    """The emulated board that measures a core's kernels."""
    core = STAND_IN.get(target_name, target_name)
    if core not in MEASURED_ON:
        raise McunetError(f"--tune needs a Cortex-M target with an emulated board; {target_name} "
                          "has none (give --board or --target cortex-m0plus|m3|m4|m7|m33)")
    return get_board(MEASURED_ON[core])


def tune_graph(graph, target_name: str, options, progress=None) -> TuneReport:
    """Measure every layer of the graph whose candidates the cache does not hold yet."""
    board = tuning_board(target_name)
    target = board.target
    core = core_of(target.name)
    cache = Measurements.load(core)
    report = TuneReport(board.name)
    start = time.perf_counter()
    base = compile_graph(graph, patch="none", target=target, options=options,
                         choices=Choices(cache))
    pending: dict[str, list] = {}
    for step in base.steps:
        if step.kernel is None or step.layer is None:
            continue
        options_ = candidates(step, target.isas)
        if len(options_) > 1 and cache.best(step, options_) is None:
            pending.setdefault(signature(step), options_)
    rounds = max((len(o) for o in pending.values()), default=0)
    inputs = random_inputs(graph, 1, seed=0)
    for r in range(rounds):
        force = {sig: Candidate.of(opts[min(r, len(opts) - 1)]).key for sig, opts in pending.items()}
        model = compile_graph(graph, patch="none", target=target, options=options,
                              choices=Choices(cache, force))
        if progress:
            progress(f"tune: run {r + 1} of {rounds} on {board.name}")
        result = run_on_board(model, board, inputs, profile=True)
        for step, span in zip(spans_alone(model), result.layers):
            if step is not None and signature(step) in pending:
                cache.record(step, span["instructions"])
    for opts in pending.values():
        for o in opts:
            cache.record(o, None)  # tried; a count measured above stays
    cache.save()
    report.rounds, report.seconds = rounds, time.perf_counter() - start
    for step in base.steps:
        sig = signature(step) if step.kernel is not None and step.layer is not None else None
        if sig not in pending:
            continue
        opts = pending.pop(sig)
        counts = {k: v for k, v in cache.layers.get(sig, {}).items() if v is not None}
        best = cache.best(step, opts)
        report.layers.append({"op": step.op.index, "kernel": step.kernel.family,
                              "best": Candidate.of(best).key if best else None,
                              "rule": Candidate.of(opts[0]).key,
                              "estimated": Candidate.of(estimated_best(opts, base.graph, core)).key,
                              "counts": counts})
    report.layers = [r for r in report.layers if r["best"] is not None]
    return report

"""Peak SRAM, flash and MACs of an architecture, measured by mcunet's own planner.

One source of truth for memory: the numbers come from ``compile_graph`` on the graph that
search/graph.py builds for the architecture, with the compiler's stages when they help (the
joint architecture + schedule search of MCUNetV2, through residual blocks: patch-based
sections over the early inverted-residual blocks, streamed ones, and with a budget the plan of
least extra work that fits it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mcunet.budget import Budget
from mcunet.compiler import PATCH_CHOICES, CompiledModel, compile_graph, compile_model
from mcunet.costmodel import CYCLES_PER_INSTRUCTION, estimate
from mcunet.errors import McunetError
from mcunet.target import HOST, Target

from .graph import build_graph
from .space import Arch, SearchSpace

# A candidate's code estimate is the exported library's code within a few percent (the
# placeholder quantisation and the table's fit each differ a little: docs/search.md, "Flash");
# the search holds this much more room for it, so that the exported winner, whose code is
# compiled and measured, fits.
CODE_MARGIN = 0.08


def parse_count(text: str | int | None) -> int | None:
    """'2.5M', '800k' or a plain number (None and 'auto' stay None)."""
    if text is None or isinstance(text, int) or str(text).lower() == "auto":
        return text if isinstance(text, int) else None
    s = str(text).strip().upper()
    mult = {"K": 1e3, "M": 1e6, "G": 1e9}.get(s[-1:], 1)
    try:
        value = float(s[:-1] if s[-1:] in "KMG" else s) * mult
    except ValueError:
        value = -1
    if value <= 0:
        raise McunetError(f"cannot read '{text}' as a count; write e.g. 2.5M or 800k")
    return int(value)


def default_patch() -> str:
    return "auto" if "auto" in PATCH_CHOICES else "none"


def compile_for_budget(path, target: Target | None, sram_bytes: int | None) -> CompiledModel:
    """The searched model as it is deployed: with the SRAM budget, the plan of least work
    that fits (layer by layer whenever that fits), as `mcunet compile --sram` plans it; the
    smallest plan where the kernels' stack tips that one over."""
    compiled = compile_model(path, patch=default_patch(), target=target, sram_budget=sram_bytes)
    if sram_bytes is not None and compiled.peak_sram_bytes > sram_bytes and compiled.stack_bytes:
        compiled = compile_model(path, patch=default_patch(), target=target)
    return compiled


@dataclass(frozen=True)
class Exported:
    """The exported model as it is deployed (compile_for_budget) and its library's code,
    compiled and measured (measured_code_bytes): the figures model.json reports and the
    budget is checked against, as `mcunet compile --sram --flash` checks them."""

    compiled: CompiledModel
    code_bytes: int

    @property
    def library_flash_bytes(self) -> int:
        return self.compiled.flash_bytes + self.code_bytes

    def fits(self, budget: Budget) -> bool:
        return (self.compiled.peak_sram_bytes <= budget.sram_bytes
                and self.library_flash_bytes <= budget.flash_bytes)

    def measured(self, budget: Budget) -> dict:
        c = self.compiled
        return {"peak_sram_bytes": c.peak_sram_bytes, "flash_bytes": c.flash_bytes,
                "code_bytes": self.code_bytes, "library_flash_bytes": self.library_flash_bytes,
                "macs": c.macs, "patch": c.schedule, "fits": self.fits(budget)}

    def over_budget(self, what: str, budget: Budget, estimate: "Cost") -> str:
        """Why the exported model does not fit: its figures against the budget and the
        search's estimate of them."""
        c = self.compiled
        return (f"{what} needs {c.peak_sram_bytes:,} B SRAM and {self.library_flash_bytes:,} B "
                f"flash ({c.flash_bytes:,} of weights and constants + {self.code_bytes:,} of "
                f"code), over the budget of {budget.sram_bytes:,} B / {budget.flash_bytes:,} B; "
                f"the search planned {estimate.peak_sram_bytes:,} B SRAM and "
                f"{estimate.flash_bytes:,} B + about {estimate.code_bytes or 0:,} B of code. "
                "This is a bug in the search's memory model, please report it; the model is "
                "written, and a larger --flash (or --sram) fits it")


def export_plan(path, target: Target, board: str | None, budget: Budget) -> Exported:
    compiled = compile_for_budget(path, target, budget.sram_bytes)
    return Exported(compiled, measured_code_bytes(compiled, board))


@dataclass(frozen=True)
class Cost:
    peak_sram_bytes: int
    flash_bytes: int  # weights and constants (exact: the plan's)
    macs: int
    patch: str  # the schedule chosen: "none" or the stages (as --patch writes them)
    # The cost model's instructions on the board's core (mcunet.costmodel); None where it
    # has no estimate (no board, or a core it was not measured on).
    instructions: int | None = None
    # The library's code on the search's core (the host's without a board), estimated from
    # its rendered C (estimated_code_bytes): with flash_bytes, what `mcunet compile --flash`
    # holds to the budget. None only in a cost read from a search saved before code counted.
    code_bytes: int | None = None

    @property
    def library_flash_bytes(self) -> int:
        """Everything the library puts in flash: weights, constants and code (estimated)."""
        return self.flash_bytes + (self.code_bytes or 0)

    @property
    def flash_held_bytes(self) -> int:
        """The flash the search holds for the library: its weights and constants, and its
        code estimate with CODE_MARGIN more (the estimate is within a few percent)."""
        return self.flash_bytes + math.ceil((self.code_bytes or 0) * (1 + CODE_MARGIN))

    def latency_ms(self, budget: Budget) -> float | None:
        """At the board's clock, from the cost model's instructions (one a cycle: the bound
        the anchors' cycle counts are compared with), else from MACs at a conservative rate."""
        if not budget.clock_hz:
            return None
        if self.instructions is not None:
            return self.instructions * CYCLES_PER_INSTRUCTION / budget.clock_hz * 1000.0
        return self.macs / budget.macs_per_cycle / budget.clock_hz * 1000.0

    def fits(self, budget: Budget) -> bool:
        if self.peak_sram_bytes > budget.sram_bytes or self.flash_held_bytes > budget.flash_bytes:
            return False
        if budget.max_macs is not None and self.macs > budget.max_macs:
            return False
        lat = self.latency_ms(budget)
        return budget.latency_ms is None or lat is None or lat <= budget.latency_ms

    def to_dict(self) -> dict:
        return asdict(self)


def measure(space: SearchSpace, arch: Arch, patch: str = "none", target: Target = HOST,
            sram_budget: int | None = None) -> Cost:
    """Plan arch's int8 graph with mcunet's compiler for the target core (with the Cortex-M
    DSP kernels, whose scratch is part of the arena, when the core has them); with "auto" and
    an SRAM budget, the plan of least extra work that fits it."""
    compiled = compile_graph(build_graph(space, arch), patch=patch, target=target,
                             sram_budget=sram_budget)
    cost = estimate(compiled)
    return Cost(peak_sram_bytes=compiled.peak_sram_bytes, flash_bytes=compiled.flash_bytes,
                macs=compiled.macs, patch=compiled.schedule,
                instructions=cost.instructions if cost is not None else None,
                code_bytes=estimated_code_bytes(compiled))


def estimated_code_bytes(compiled: CompiledModel) -> int:
    """The library's code bytes on the compiled model's core from its rendered C and the
    table fitted with the core's compiler (mcunet.boards.stack.table_code_bytes: rendering
    takes tens of milliseconds, compiling seconds)."""
    from mcunet.boards.stack import table_code_bytes

    return table_code_bytes(compiled.library().files, compiled.target.name)


def measured_code_bytes(compiled: CompiledModel, board: str | None) -> int:
    """The exported library's code bytes as `mcunet compile` measures them: compiled for the
    board's core (Arm GCC, or its table where none is installed), else by the host's C
    compiler."""
    from mcunet.boards import core_target, get_board

    target = get_board(board).target if board else core_target(compiled.target.name)
    return target.footprint(compiled.library().files).code_bytes


class CostCache:
    """The cost of an architecture, memoised by the network it builds.

    The layer-by-layer plan takes milliseconds; the stages ("auto": patches and streams,
    chosen for the budget) up to about a second, so they are planned only for a candidate
    that does not fit layer by layer but whose flash fits (stages change only SRAM), and at
    most `patch_plans` times per search (a count, not a time, so a search stays
    reproducible). A candidate that fits either way is reported with the plan that fits.

    The layer-by-layer plans depend only on the network and the target core, so the caches of
    a budget sweep's budgets on one core share them (`layers`, a dict); the patch-based plans
    are made for one SRAM budget and stay with its cache (`table`).
    """

    def __init__(self, space: SearchSpace, patch: str | None = None, patch_plans: int = 15,
                 target: Target = HOST, layers: dict | None = None):
        self.space = space
        self.patch = patch or default_patch()
        self.patch_plans = patch_plans
        self.target = target
        self.layers: dict[str, Cost] = {} if layers is None else layers  # layer by layer
        self.table: dict[str, Cost] = {}  # where this budget's patch-based plan is better
        self.patched: set[str] = set()  # keys whose "auto" plan was computed

    def _get(self, key: str) -> Cost | None:
        return self.table.get(key) or self.layers.get(key)

    def __call__(self, arch: Arch, budget: Budget | None = None, patches_left: int | None = None) -> Cost:
        """The cost of arch; with a budget, the patch-based plan too where it may help, while
        fewer than `patch_plans` (or the caller's `patches_left`) have been made."""
        key = self.space.key(arch)
        cost = self._get(key)
        if cost is None:
            cost = self.layers[key] = measure(self.space, arch, "none", self.target)
        if (budget is not None and (patches_left is None or patches_left > 0)
                and self._wants_stages(key, cost, budget)):
            staged = measure(self.space, arch, "auto", self.target, budget.sram_bytes)
            cost = self.table[key] = min(cost, staged, key=lambda c: c.peak_sram_bytes)
            self.patched.add(key)
        return cost

    def _wants_stages(self, key: str, cost: Cost, budget: Budget) -> bool:
        return (self.patch == "auto" and key not in self.patched and not cost.fits(budget)
                and cost.flash_held_bytes <= budget.flash_bytes
                and (budget.max_macs is None or cost.macs <= budget.max_macs)
                and len(self.patched) < self.patch_plans)

    def plan_batch(self, archs: list[Arch], budget: Budget, plan_many, limit: int | None = None) -> None:
        """Plan many architectures at once with plan_many (a list of (arch, patch, sram
        budget) -> their Costs, in that order; Ray tasks in a distributed search), so that
        calling this cache on them afterwards, in this order, gives what it would have
        computed one by one: the layer-by-layer plans first, then the patch-based plans of
        those that would get one (a decision that depends only on the layer-by-layer cost and
        the count made before it), at most `limit` of them."""
        todo, keys = [], set()
        for arch in archs:
            key = self.space.key(arch)
            if self._get(key) is None and key not in keys:
                keys.add(key)
                todo.append(arch)
        for arch, cost in zip(todo, plan_many([(a, "none", None) for a in todo])):
            self.layers[self.space.key(arch)] = cost
        staged, made = [], 0
        for arch in archs:
            key = self.space.key(arch)
            if (limit is None or made < limit) and key not in {self.space.key(a) for a in staged} \
                    and self._wants_stages(key, self._get(key), budget) \
                    and len(self.patched) + len(staged) < self.patch_plans:
                staged.append(arch)
                made += 1
        for arch, cost in zip(staged, plan_many([(a, "auto", budget.sram_bytes) for a in staged])):
            key = self.space.key(arch)
            self.table[key] = min(self._get(key), cost, key=lambda c: c.peak_sram_bytes)
            self.patched.add(key)

    def to_dict(self, layers: bool = True) -> dict:
        """For state.json; without `layers` (a sweep stores the shared ones once)."""
        d = {"patched": sorted(self.patched),
             "table": {k: v.to_dict() for k, v in self.table.items()}}
        if layers:
            d["layers"] = layers_to_dict(self.layers)
        return d

    def load(self, d: dict) -> None:
        self.patched = set(d.get("patched", []))
        self.table.update({k: Cost(**v) for k, v in d.get("table", {}).items()})
        self.layers.update(layers_from_dict(d.get("layers", {})))


def layers_to_dict(layers: dict) -> dict:
    return {k: v.to_dict() for k, v in layers.items()}


def layers_from_dict(d: dict) -> dict:
    """The saved costs (those saved before the search counted code are planned again)."""
    return {k: Cost(**v) for k, v in d.items() if v.get("code_bytes") is not None}

"""Which kernel variant, and which blocking of it, each layer gets: measured or estimated.

A layer's candidates are the kernels of its family that the target's instruction sets run
and that apply to it, each with every blocking its record offers (`Kernel.tunables`: the
DSP conv's pixel block, for one). All compute the same integers; they differ in
instructions and scratch.

- **Measured** (`mcunet compile/build/run --tune`, mcunet.boards.tune): every candidate runs on
  the emulated board of the target's core and the one that executes the fewest instructions
  is kept. The measurements are cached per core by the layer's signature (its family and
  parameter record, which fix the generated code), so a later compile of any model with that
  layer, and the search's candidates, get the choice without running anything.
- **By rule** otherwise: the registry's order and each kernel's own blocking rule
  (`codegen.kernels.FAMILIES`, best first; the DSP conv's pixel block by
  `conv_dsp_pixels`). The fitted cost model (mcunet.costmodel) is not the default: it does
  not see register spills, and it agrees with the measurement less often than the rule
  (scripts/bench_tune.py). The tuner reports how often each agrees with the measurement.

The cache file's name holds a digest of the kernel templates: a change of any kernel makes
the measurements before it mean nothing, and they are not read.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from .codegen import kernels
from .costmodel import estimate_step
from .footprint import cache_folder, write_atomic
from .step import Step

TUNE_FORMAT = 1  # bump when the cache's content changes meaning


@dataclass(frozen=True)
class Candidate:
    """One way to run a layer: a kernel and its blocking."""
    kernel: str
    tuning: tuple[tuple[str, int], ...] = ()

    @property
    def key(self) -> str:
        return self.kernel + "".join(f" {k}={v}" for k, v in self.tuning)

    @classmethod
    def of(cls, step: Step) -> "Candidate":
        return cls(step.kernel.name, step.layer.tuning if step.layer is not None else ())


def _applicable(step: Step, isas: frozenset[str]):
    """The family's kernels that the target runs and that apply to the layer (its tuning
    cleared), in the registry's order, with that layer; not those the flash budget chooses
    (kernels.by_flash: codegen.rewrites.widen_filters)."""
    base = replace(step.layer, tuning=())
    return ((kernel, base) for kernel in kernels.FAMILIES[step.kernel.family]
            if kernel.isa in isas and kernel.applies(base) and not kernels.by_flash(kernel))


def rule_choice(step: Step, isas: frozenset[str]) -> Step:
    """The registry's rule: the first candidate (candidates(step, isas)[0]), found without
    listing the others."""
    if step.kernel is None or step.layer is None:
        return step
    kernel, base = next(_applicable(step, isas))  # the portable kernel always applies
    return replace(step, kernel=kernel, layer=base)


def candidates(step: Step, isas: frozenset[str]) -> list[Step]:
    """The step on each of its candidates, in the registry's order (the default first within
    a kernel: its blocking as the registry would choose it)."""
    if step.kernel is None or step.layer is None:
        return [step]
    result = []
    for kernel, base in _applicable(step, isas):
        result.append(replace(step, kernel=kernel, layer=base))
        options = kernel.tunables(base)
        names = sorted(options)
        for values in itertools.product(*(options[n] for n in names)):
            tuned = replace(base, tuning=tuple(zip(names, values)))
            if kernel.constants(tuned) != kernel.constants(base) or \
                    kernel.scratch_bytes(tuned) != kernel.scratch_bytes(base):
                result.append(replace(step, kernel=kernel, layer=tuned))
    return result


def signature(step: Step) -> str:
    """What fixes a layer's generated code: its family and parameter record (no tuning)."""
    return f"{step.kernel.family}|{replace(step.layer, tuning=())!r}"


@functools.lru_cache(maxsize=1)
def _templates_digest() -> str:
    root = Path(__file__).resolve().parent.parent / "templates"
    h = hashlib.sha256(str(TUNE_FORMAT).encode())
    for path in sorted(root.rglob("*.j2")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_path(core: str) -> Path:
    return cache_folder("tune") / f"{core}-{_templates_digest()}.json"


@dataclass
class Measurements:
    """Instructions per candidate, per layer signature, counted on one core's emulated board."""
    core: str
    # None: tried, but the plan put the layer on a leaner variant (scratch at the peak), so
    # that candidate never ran alone.
    layers: dict[str, dict[str, int | None]] = field(default_factory=dict)

    @classmethod
    def load(cls, core: str) -> "Measurements":
        path = cache_path(core)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(core)
        return cls(core, data.get("layers", {}))

    def save(self) -> None:
        write_atomic(cache_path(self.core), json.dumps({"core": self.core, "layers": self.layers},
                                                      indent=0, sort_keys=True))

    def record(self, step: Step, instructions: int | None) -> None:
        counts = self.layers.setdefault(signature(step), {})
        key = Candidate.of(step).key
        if instructions is not None or key not in counts:
            counts[key] = instructions

    def best(self, step: Step, options: list[Step]) -> Step | None:
        """The measured candidate with the fewest instructions, once every candidate was
        tried (a partial measurement would prefer whatever was measured)."""
        seen = self.layers.get(signature(step))
        if not seen or any(Candidate.of(o).key not in seen for o in options):
            return None
        ran = [o for o in options if seen[Candidate.of(o).key] is not None]
        return min(ran, key=lambda o: seen[Candidate.of(o).key]) if ran else None


@functools.lru_cache(maxsize=8)
def _cached(core: str, mtime: float) -> Measurements:
    return Measurements.load(core)


def measurements(core: str | None) -> Measurements | None:
    """The cached measurements of a core (read once per change of the file)."""
    if core is None:
        return None
    path = cache_path(core)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return _cached(core, mtime)


def estimated_best(options: list[Step], graph, core: str | None) -> Step:
    """The candidate the cost model estimates cheapest, among those it has coefficients for
    (a core's table lacks the kernels that never run there, such as the portable conv on a
    DSP core); the registry's first where it cannot estimate that one."""
    if core is None or len(options) == 1:
        return options[0]
    estimates = [estimate_step(o, graph, core) for o in options]
    if estimates[0] is None:
        return options[0]
    known = [i for i, e in enumerate(estimates) if e is not None]
    return options[min(known, key=lambda i: (estimates[i], i))]


@dataclass(frozen=True)
class Choices:
    """How compile_graph picks each step's candidate: `force` (signature -> candidate key, the
    tuner's rounds) first, then `measured`, then the registry's rule."""
    measured: Measurements | None = None
    force: dict[str, str] = field(default_factory=dict)


def choose_candidates(steps: list[Step], isas: frozenset[str], choices: Choices) -> list[Step]:
    """Each step on its candidate. The candidates are listed only for a layer that `choices`
    names (forced, or in the measurements): every other one takes the rule's, and compiles
    plan many step lists (the search for stages), so this stays cheap."""
    result = []
    for step in steps:
        sig = signature(step) if step.kernel is not None and step.layer is not None and \
            (choices.force or choices.measured is not None) else None
        if sig is None or (sig not in choices.force and
                           (choices.measured is None or sig not in choices.measured.layers)):
            result.append(rule_choice(step, isas))
            continue
        options = candidates(step, isas)
        pick = next((o for o in options if Candidate.of(o).key == choices.force.get(sig)), None)
        if pick is None and choices.measured is not None:
            pick = choices.measured.best(step, options)
        result.append(pick or options[0])
    return result

"""`mcunet train-plan`: choose the on-device training scheme that fits a memory budget (issue 14,
item 3), as the contribution analysis of Lin et al. ("On-Device Training Under 256KB Memory")
does: every scheme the compiler accepts for the model is trained on labelled samples and scored
on a validation split, and its accuracy gain is set against the training memory `plan --train`
reports for it.

The training runs in NumPy, on mcunet.training.TrainReference, which the generated C matches
bit for bit (host and emulated M4): what is measured here is what the device would learn from
the same samples in the same order, with no firmware built. The frozen layers below the trained
tail run once per row on TFLite's reference kernels (ai-edge-litert, as `simulate --check`);
nothing imports TensorFlow.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import McunetError
from .progress import enabled, plural
from .boards import get_board
from .search.data import as_model_input, epoch_order, load_training_data
from .training import TrainReference

DEFAULT_SAMPLES = 500
DEFAULT_VAL = 500
DEFAULT_EPOCHS = 5
MAX_LAST = 8  # last:N is tried up to here (the backward stops far earlier today)


@dataclass
class Scheme:
    """One candidate: its memory (plan --train), whether it fits, and what it learnt."""
    scheme: str
    layers: list[int]
    parameters: int
    training_peak_sram_bytes: int
    training_flash_bytes: int
    fits: bool
    over: str = ""  # what it misses the budget by
    lr: float | None = None
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    seconds: float | None = None

    @property
    def gain(self) -> float | None:
        if self.accuracy_after is None:
            return None
        return self.accuracy_after - self.accuracy_before

    @property
    def gain_per_kb(self) -> float | None:
        """Accuracy points gained per KB of training peak SRAM."""
        g = self.gain
        return None if g is None else 100 * g / (self.training_peak_sram_bytes / 1024)

    def to_json(self) -> dict:
        return {**asdict(self), "gain": self.gain, "gain_points_per_kb": self.gain_per_kb}


@dataclass
class TrainPlan:
    model: str
    board: str | None
    sram_bytes: int | None
    flash_bytes: int | None
    schemes: list[Scheme]
    refused: dict[str, str]
    samples: int
    val: int
    epochs: int
    pick: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"model": self.model, "board": self.board, "sram_budget_bytes": self.sram_bytes,
                "flash_budget_bytes": self.flash_bytes, "samples": self.samples,
                "val": self.val, "epochs": self.epochs, "pick": self.pick,
                "schemes": [s.to_json() for s in self.schemes], "refused": self.refused}


def say(text: str) -> None:
    if enabled():
        import sys
        print(text, file=sys.stderr, flush=True)


def candidates(model: str, board=None, sram=None, flash=None, extra=()):
    """[(scheme, compiled)] of every scheme the compiler accepts for the model (bias, head,
    last:2 .. as far as the backward reaches, then the sparse schemes' files in `extra`), and
    {scheme: why} of the first refused last:N. A sparse scheme the compiler refuses is an
    error (McunetError naming its field)."""
    from . import api

    out, refused = [], {}
    for spec in extra:
        out.append((str(spec), api.compile_unchecked(model, board=board, sram=sram, flash=flash,
                                                     train=str(spec))))
    extra_out, out = out, []
    for spec in ["bias", "head"] + [f"last:{n}" for n in range(2, MAX_LAST + 1)]:
        try:
            compiled = api.compile_unchecked(model, board=board, sram=sram, flash=flash,
                                             train=spec)
        except McunetError as exc:
            if spec in ("bias", "head"):
                raise
            refused[spec] = str(exc)
            break
        out.append((spec, compiled))
    return out + extra_out, refused


def entry_values(model: str, indices: set[int], rows: np.ndarray) -> dict[int, np.ndarray]:
    """The int8 values of the given tensors for every row, by TFLite's reference kernels (the
    frozen forward below each trained tail: the same for every scheme, run once)."""
    from .reference import _interpreter

    interp = _interpreter(model, preserve=True)
    d = interp.get_input_details()[0]
    out: dict[int, list] = {i: [] for i in indices}
    for x in rows:
        interp.set_tensor(d["index"], np.asarray(x, np.int8).reshape(d["shape"]))
        interp.invoke()
        for i in indices:
            out[i].append(interp.get_tensor(i).reshape(-1).copy())
    return {i: np.stack(v) for i, v in out.items()}


def accuracy(ref: TrainReference, xs: np.ndarray, ys: np.ndarray) -> float:
    hits = sum(int(np.argmax(ref.logits(x))) == int(y) for x, y in zip(xs, ys))
    return hits / max(1, len(ys))


def train_scheme(training, train_x, train_y, val_x, val_y, order, lr: float,
                 momentum: float | None = None) -> tuple[float, float]:
    """(accuracy before, after) on the validation rows of TrainReference trained on the rows
    in `order` (entry-tensor values)."""
    ref = TrainReference(training, lr=lr, momentum=momentum)
    before = accuracy(ref, val_x, val_y)
    for i in order:
        ref.step(train_x[i], int(train_y[i]))
    return before, accuracy(ref, val_x, val_y)


def measure(model: str, compiled_schemes, x_train, y_train, x_val, y_val, epochs: int,
            lrs: list[float], seed: int = 0, momentum: float | None = None,
            only=None) -> dict[str, tuple[float, float, float, float]]:
    """{scheme: (lr, before, after, seconds)} for every (scheme, compiled) given (or those in
    `only`), each trained `epochs` passes over the same reshuffled samples; with several
    learning rates the best on the validation rows."""
    todo = [(s, c) for s, c in compiled_schemes if only is None or s in only]
    indices = {e for _, c in todo for e in c.training.entries}
    start = time.perf_counter()
    values = entry_values(model, indices, np.concatenate([x_train, x_val]))
    say(f"train-plan: frozen forward of {plural(len(x_train) + len(x_val), 'row')} on TFLite's "
        f"reference kernels in {time.perf_counter() - start:.1f} s")
    n = len(x_train)
    order = epoch_order(n, epochs, seed)  # as train-on-device's, step for step
    out = {}
    for scheme, compiled in todo:
        v = np.concatenate([values[e] for e in compiled.training.entries], axis=1)
        best = None
        for lr in lrs:
            start = time.perf_counter()
            before, after = train_scheme(compiled.training, v[:n], y_train, v[n:], y_val,
                                         order, lr, momentum)
            seconds = time.perf_counter() - start
            say(f"train-plan: {scheme} lr {lr:g}: {plural(len(order), 'step')} in "
                f"{seconds:.1f} s, validation {before:.1%} -> {after:.1%}")
            if best is None or after > best[2]:
                best = (lr, before, after, seconds)
        out[scheme] = best
    return out


def _over(fit) -> str:
    parts = []
    if fit.sram_over:
        parts.append(f"{fit.sram_bytes - fit.budget.sram_bytes:,} B over the SRAM budget")
    if fit.flash_over:
        parts.append(f"{fit.flash_bytes - fit.budget.flash_bytes:,} B over the flash budget")
    return " and ".join(parts)


def train_plan(model: str, dataset: str, sram=None, flash=None, board=None,
               classes: list[int] | None = None, samples: int = DEFAULT_SAMPLES,
               val: int = DEFAULT_VAL, epochs: int = DEFAULT_EPOCHS,
               lrs: list[float] | None = None, seed: int = 0, schemes=()) -> TrainPlan:
    """Measure every accepted scheme that fits and pick the most accurate (ties: the smaller
    training peak SRAM); `schemes`: sparse schemes' JSON files measured beside them.
    McunetError: no budget, a bad dataset, an unknown board, a bad sparse scheme, nothing
    fits."""
    from .budget import fit

    b = get_board(board) if board else None
    if sram is None and b is None:
        raise McunetError("train-plan needs a budget: give --sram (e.g. 256KB) or --board")
    lrs = lrs or [0.01]
    x_train, y_train, _, _ = load_training_data(dataset, classes)
    compiled_schemes, refused = candidates(model, board=b, sram=sram, flash=flash,
                                           extra=schemes)
    first = compiled_schemes[0][1]
    schemes = []
    for spec, compiled in compiled_schemes:
        s = compiled.training.summary(compiled)
        f = fit(compiled, compiled.budget)
        schemes.append(Scheme(scheme=s["scheme"], layers=s["layers"],
                              parameters=s["parameters"],
                              training_peak_sram_bytes=s["training_peak_sram_bytes"],
                              training_flash_bytes=s["training_flash_bytes"], fits=f.fits,
                              over=_over(f)))
    budget = first.budget
    plan = TrainPlan(model=str(model), board=b.name if b else None,
                     sram_bytes=budget.sram_bytes, flash_bytes=budget.flash_bytes,
                     schemes=schemes, refused=refused, samples=samples, val=val, epochs=epochs)
    fitting = [s for s in schemes if s.fits]
    if not fitting:
        small = min(schemes, key=lambda s: (s.training_peak_sram_bytes, s.training_flash_bytes))
        where = f" on {b.name}" if b else ""
        raise McunetError(f"no training scheme fits the budget{where} "
                          f"(SRAM {_size(budget.sram_bytes)}, flash {_size(budget.flash_bytes)}): "
                          f"the smallest, {small.scheme}, needs {small.training_peak_sram_bytes:,} B "
                          f"of SRAM and {small.training_flash_bytes:,} B of flash, {small.over}")
    units = first.training.head.units
    top = int(max(y_train.max(initial=0), 0))
    if top >= units:
        raise McunetError(f"--dataset {dataset} has labels up to {top}; the model's head has "
                          f"{units} outputs: give --classes with at most {units} classes "
                          f"(e.g. --classes 0-{units - 1})")
    need = samples + val
    if len(x_train) < need:
        raise McunetError(f"--dataset {dataset} has {plural(len(x_train), 'training row')}; "
                          f"--samples {samples} and --val {val} need {need:,}")
    rng = np.random.default_rng(seed)
    take = rng.permutation(len(x_train))[:need]
    rows = as_model_input(x_train[take], first)
    labels = y_train[take]
    results = measure(model, compiled_schemes, rows[:samples], labels[:samples], rows[samples:],
                      labels[samples:], epochs, lrs, seed=seed,
                      only={s.scheme for s in fitting})
    for s in schemes:
        if s.scheme in results:
            s.lr, s.accuracy_before, s.accuracy_after, s.seconds = results[s.scheme]
    best = max(fitting, key=lambda s: (round(s.accuracy_after, 9), -s.training_peak_sram_bytes))
    plan.pick = best.scheme
    return plan


def _size(n: int | None) -> str:
    return "unlimited" if n is None else f"{n:,} B"


def table(plan: TrainPlan) -> str:
    w = max([8] + [len(s.scheme) for s in plan.schemes])
    head = (f"{'scheme':<{w}} {'layers':<10} {'params':>8} {'train SRAM':>11} {'flash':>9} "
            f"{'fits':<5} {'lr':>6} {'val before':>10} {'val after':>9} {'gain/KB':>8}")
    lines = [head, "-" * len(head)]
    for s in plan.schemes:
        measured = s.accuracy_after is not None
        lines.append(
            f"{s.scheme:<{w}} {','.join(map(str, s.layers)):<10} {s.parameters:>8,} "
            f"{s.training_peak_sram_bytes:>11,} {s.training_flash_bytes:>9,} "
            f"{'yes' if s.fits else 'no':<5} {(f'{s.lr:g}' if measured else '-'):>6} "
            f"{(f'{s.accuracy_before:.1%}' if measured else '-'):>10} "
            f"{(f'{s.accuracy_after:.1%}' if measured else '-'):>9} "
            f"{(f'{s.gain_per_kb:+.3f}' if measured else '-'):>8}"
            + ("" if measured else f"  ({s.over})"))
    for spec, why in plan.refused.items():
        lines.append(f"{spec}: refused: {why}")
    return "\n".join(lines)

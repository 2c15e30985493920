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

import itertools
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import McunetError
from .progress import enabled, plural
from .boards import get_board
from .search.data import as_model_input, epoch_order, load_training_data
from .training import TrainReference, ratio_channels

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
    # named (bias, head, last:N), given (--scheme FILE.json), contribution (the head and one
    # update of one layer, measured for the search) or searched (a combination the search
    # predicted from the contributions, then trained)
    source: str = "named"
    # searched: the head's validation accuracy plus the sum of the parts' contributions (an
    # additive ranking, not an estimate: overlapping parts take it past 100%)
    predicted: float | None = None
    predicted_gain: float | None = None  # the sum of the contributions (over the head alone)
    sparse: dict | None = None  # the scheme's JSON (--train FILE.json) for the search's own

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
    search: dict | None = None  # what the sparse-update search did (docs/training.md)

    def to_json(self) -> dict:
        return {"model": self.model, "board": self.board, "sram_budget_bytes": self.sram_bytes,
                "flash_budget_bytes": self.flash_bytes, "samples": self.samples,
                "val": self.val, "epochs": self.epochs, "pick": self.pick,
                "pick_sparse": self.picked.sparse if self.pick else None,
                "schemes": [s.to_json() for s in self.schemes], "refused": self.refused,
                "search": self.search, "notes": self.notes}

    @property
    def picked(self) -> Scheme | None:
        return next((s for s in self.schemes if s.scheme == self.pick), None)


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


class Trainer:
    """Trains schemes on the same samples in the same order (train-on-device's, step for step)
    and scores them on the same validation rows; the frozen forward's values of each entry
    tensor are computed once, for every scheme that starts there."""

    def __init__(self, model: str, x_train, y_train, x_val, y_val, epochs: int,
                 lrs: list[float], seed: int = 0, momentum: float | None = None):
        self.model, self.lrs, self.momentum = model, lrs, momentum
        self.y_train, self.y_val = y_train, y_val
        self.rows = np.concatenate([x_train, x_val])
        self.n = len(x_train)
        self.order = epoch_order(self.n, epochs, seed)  # as train-on-device's, step for step
        self.values: dict[int, np.ndarray] = {}

    def prepare(self, entries) -> None:
        missing = set(entries) - set(self.values)
        if not missing:
            return
        start = time.perf_counter()
        self.values.update(entry_values(self.model, missing, self.rows))
        say(f"train-plan: frozen forward of {plural(len(self.rows), 'row')} on TFLite's "
            f"reference kernels in {time.perf_counter() - start:.1f} s")

    def run(self, scheme: str, compiled) -> tuple[float, float, float, float]:
        """(lr, before, after, seconds): the scheme trained at every learning rate, the best
        on the validation rows."""
        entries = compiled.training.entries
        self.prepare(entries)
        v = np.concatenate([self.values[e] for e in entries], axis=1)
        best = None
        for lr in self.lrs:
            start = time.perf_counter()
            before, after = train_scheme(compiled.training, v[:self.n], self.y_train,
                                         v[self.n:], self.y_val, self.order, lr, self.momentum)
            seconds = time.perf_counter() - start
            say(f"train-plan: {scheme} lr {lr:g}: {plural(len(self.order), 'step')} in "
                f"{seconds:.1f} s, validation {before:.1%} -> {after:.1%}")
            if best is None or after > best[2]:
                best = (lr, before, after, seconds)
        return best


def measure(model: str, compiled_schemes, x_train, y_train, x_val, y_val, epochs: int,
            lrs: list[float], seed: int = 0, momentum: float | None = None,
            only=None) -> dict[str, tuple[float, float, float, float]]:
    """{scheme: (lr, before, after, seconds)} for every (scheme, compiled) given (or those in
    `only`), each trained `epochs` passes over the same reshuffled samples; with several
    learning rates the best on the validation rows."""
    todo = [(s, c) for s, c in compiled_schemes if only is None or s in only]
    trainer = Trainer(model, x_train, y_train, x_val, y_val, epochs, lrs, seed, momentum)
    trainer.prepare({e for _, c in todo for e in c.training.entries})
    return {scheme: trainer.run(scheme, compiled) for scheme, compiled in todo}


# The sparse-update search (docs/training.md, "The search"): the contribution analysis of Lin
# et al. Each update of one layer below the head (its biases; its first 1/8, 1/4, 1/2 or all
# output channels' weights) is trained alone beside the head, and its gain over the head
# alone is its contribution. A combination's accuracy is predicted as the head's plus the sum
# of its parts' contributions; the combinations are compiled in the order of that prediction
# for their memory (plan --train), and the best few that fit are trained for real. The pick is
# then made on measured accuracy, never on the prediction.
RATIOS = (0.125, 0.25, 0.5, 1.0)
SEARCH_VERIFY = 3  # the combinations of best prediction that fit, trained for real
SEARCH_COMPILES = 24  # at most this many combinations compiled for their memory


@dataclass(frozen=True)
class LayerChoice:
    """One layer's part of a searched scheme: its biases, and its first ceil(weights x
    channels) output channels' weights (None: no weights)."""
    op: int
    channels: int
    bias: bool = False
    weights: float | None = None

    @property
    def weight_channels(self) -> int:
        return ratio_channels(self.weights, self.channels)

    @property
    def trains(self) -> bool:
        return self.bias or self.weights is not None

    def label(self) -> str:
        parts = (["bias"] if self.bias else []) + (
            [f"{self.weight_channels}/{self.channels}"] if self.weights is not None else [])
        return f"op{self.op}({'+'.join(parts)})"

    def covers(self, other: "LayerChoice") -> bool:
        """Updates at least what `other` does (so needs at least its memory)."""
        return (self.bias or not other.bias) and self.weight_channels >= other.weight_channels


def sparse_spec(choices) -> dict:
    """The JSON of a searched scheme: the whole head, and each choice that trains something."""
    layers = [{"op": "head", "weights": 1, "bias": True}]
    for c in choices:
        if c.trains:
            layers.append({"op": c.op, **({"weights": c.weights} if c.weights is not None
                                          else {}), "bias": c.bias})
    return {"layers": layers}


def sparse_name(choices) -> str:
    return "+".join(["head"] + [c.label() for c in choices if c.trains])


def update_key(training) -> tuple:
    """What a training build updates, as (op, bias, weight channels) of each trained layer:
    two schemes with the same key are the same build (last:2 and the head with all of the
    conv)."""
    return tuple(sorted((op, u.bias, u.channels) for _, op, u, _ in training.layers()
                        if u.trains))


def choice_key(head, choices) -> tuple:
    return tuple(sorted([(head.op_index, True, head.units)] +
                        [(c.op, c.bias, c.weight_channels) for c in choices if c.trains]))


def layer_options(op: int, channels: int) -> list[LayerChoice]:
    """One layer's single updates: its biases, then its weights at each ratio (ratios that
    give the same number of channels tried once, at the smallest)."""
    out, seen = [LayerChoice(op, channels, bias=True)], set()
    for r in RATIOS:
        c = LayerChoice(op, channels, weights=r)
        if c.weight_channels not in seen:
            seen.add(c.weight_channels)
            out.append(c)
    return out


def search_layers(trainings) -> list[tuple[int, int]]:
    """(op, output channels) of the layers below the head that the backward reaches, from the
    deepest named scheme's build, head first."""
    deepest = max(trainings, key=lambda t: len(t.layers()))
    return [(op, n) for _, op, _, n in deepest.layers()[1:]]


def sparse_search(layers, base: Scheme, head, make, train, seen: dict,
                  verify: int = SEARCH_VERIFY, max_compiles: int = SEARCH_COMPILES):
    """([Scheme] of the contributions and the searched combinations, the search's record).
    `make(name, spec, source)` compiles a scheme for its memory -> (Scheme, compiled);
    `train(name, compiled)` -> (lr, before, after, seconds); `seen`: {update_key: Scheme}
    already measured (not trained again)."""
    out: list[Scheme] = []

    def measured(name, spec, source, predicted=None, made=None):
        scheme, compiled = made or make(name, spec, source)
        scheme.predicted = predicted
        if predicted is not None:
            scheme.predicted_gain = predicted - base.accuracy_after
        key = update_key(compiled.training)
        if key in seen:
            done = seen[key]
            scheme.lr, scheme.accuracy_before, scheme.accuracy_after, scheme.seconds = (
                done.lr, done.accuracy_before, done.accuracy_after, 0.0)
        elif scheme.fits:
            scheme.lr, scheme.accuracy_before, scheme.accuracy_after, scheme.seconds = \
                train(name, compiled)
            seen[key] = scheme
        out.append(scheme)
        return scheme

    # 1. Contributions: the head and one update of one layer.
    delta: dict[LayerChoice, float] = {}
    for op, channels in layers:
        for choice in layer_options(op, channels):
            s = measured(sparse_name([choice]), sparse_spec([choice]), "contribution")
            if s.fits and s.accuracy_after is not None:
                delta[choice] = s.accuracy_after - base.accuracy_after

    # 2. Every combination of fitting parts, predicted as the head plus their contributions.
    def parts(op, channels):
        w = [None] + [c.weights for c in layer_options(op, channels)[1:] if c in delta]
        b = [False] + ([True] if LayerChoice(op, channels, bias=True) in delta else [])
        return [LayerChoice(op, channels, bias, weights) for bias in b for weights in w]

    def predict(choices):
        total = base.accuracy_after
        for c in choices:
            if c.bias:
                total += delta[LayerChoice(c.op, c.channels, bias=True)]
            if c.weights is not None:
                total += delta[LayerChoice(c.op, c.channels, weights=c.weights)]
        return total

    combos = []
    for choices in itertools.product(*(parts(op, n) for op, n in layers)):
        trained = [c for c in choices if c.trains]
        single = len(trained) == 1 and not (trained[0].bias and trained[0].weights)
        if not trained or single or choice_key(head, choices) in seen:
            continue
        size = sum(c.weight_channels / c.channels + 0.01 * c.bias for c in trained)
        combos.append((-predict(choices), size, choices))
    combos.sort(key=lambda t: (t[0], t[1]))

    # 3. Compile in that order (skipping what needs at least the memory of one that did not
    # fit), train the best `verify` that fit.
    too_big, compiled_n, verified = [], 0, []
    for neg, _, choices in combos:
        if len(verified) >= verify or compiled_n >= max_compiles:
            break
        if any(all(c.covers(b) for c, b in zip(choices, big)) for big in too_big):
            continue
        compiled_n += 1
        scheme, compiled = make(sparse_name(choices), sparse_spec(choices), "searched")
        if not scheme.fits:
            too_big.append(choices)
            continue
        verified.append((choices, -neg, (scheme, compiled)))
    for choices, predicted, made in verified:
        measured(sparse_name(choices), sparse_spec(choices), "searched", predicted, made)
    record = {
        "layers": [{"op": op, "channels": n} for op, n in layers],
        "ratios": list(RATIOS),
        "contributions": [{"scheme": sparse_name([c]), "op": c.op, "bias": c.bias,
                           "weights": c.weights, "weight_channels": c.weight_channels,
                           "gain_over_head": d} for c, d in delta.items()],
        "combinations": len(combos), "compiled": compiled_n, "trained": len(verified),
    }
    return out, record


def _over(fit) -> str:
    parts = []
    if fit.sram_over:
        parts.append(f"{fit.sram_bytes - fit.budget.sram_bytes:,} B over the SRAM budget")
    if fit.flash_over:
        parts.append(f"{fit.flash_bytes - fit.budget.flash_bytes:,} B over the flash budget")
    return " and ".join(parts)


def _scheme(compiled, source: str = "named", sparse: dict | None = None,
            name: str | None = None) -> Scheme:
    """A candidate's memory (plan --train) and whether it fits its budget."""
    from .budget import fit

    s = compiled.training.summary(compiled)
    f = fit(compiled, compiled.budget)
    return Scheme(scheme=name or s["scheme"], layers=s["layers"], parameters=s["parameters"],
                  training_peak_sram_bytes=s["training_peak_sram_bytes"],
                  training_flash_bytes=s["training_flash_bytes"], fits=f.fits, over=_over(f),
                  source=source, sparse=sparse)


def train_plan(model: str, dataset: str, sram=None, flash=None, board=None,
               classes: list[int] | None = None, samples: int = DEFAULT_SAMPLES,
               val: int = DEFAULT_VAL, epochs: int = DEFAULT_EPOCHS,
               lrs: list[float] | None = None, seed: int = 0, schemes=(),
               search: bool = True) -> TrainPlan:
    """Measure every accepted scheme that fits, search the sparse updates of the layers the
    backward reaches (`search`; sparse_search) and pick the most accurate measured (ties: the
    smaller training peak SRAM); `schemes`: sparse schemes' JSON files measured beside them.
    McunetError: no budget, a bad dataset, an unknown board, a bad sparse scheme, nothing
    fits."""
    from . import api

    b = get_board(board) if board else None
    if sram is None and b is None:
        raise McunetError("train-plan needs a budget: give --sram (e.g. 256KB) or --board")
    lrs = lrs or [0.01]
    x_train, y_train, _, _ = load_training_data(dataset, classes)
    compiled_schemes, refused = candidates(model, board=b, sram=sram, flash=flash,
                                           extra=schemes)
    first = compiled_schemes[0][1]
    given = {str(spec) for spec in schemes}
    found = [_scheme(c, "given" if spec in given else "named") for spec, c in compiled_schemes]
    budget = first.budget
    plan = TrainPlan(model=str(model), board=b.name if b else None,
                     sram_bytes=budget.sram_bytes, flash_bytes=budget.flash_bytes,
                     schemes=found, refused=refused, samples=samples, val=val, epochs=epochs)
    fitting = [s for s in found if s.fits]
    if not fitting:
        small = min(found, key=lambda s: (s.training_peak_sram_bytes, s.training_flash_bytes))
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
    trainer = Trainer(model, rows[:samples], labels[:samples], rows[samples:],
                      labels[samples:], epochs, lrs, seed=seed)
    trainer.prepare({e for (_, c), s in zip(compiled_schemes, found) if s.fits
                     for e in c.training.entries})
    seen = {}
    for s, (_, compiled) in zip(found, compiled_schemes):
        if s.fits:
            s.lr, s.accuracy_before, s.accuracy_after, s.seconds = trainer.run(s.scheme,
                                                                             compiled)
            seen.setdefault(update_key(compiled.training), s)
    head = next((s for s in found if s.scheme == "head"), None)
    layers = search_layers([c.training for _, c in compiled_schemes])
    if not search:
        plan.notes.append("the sparse-update search was not run (--no-search)")
    elif not layers:
        plan.notes.append("no sparse-update search: the backward reaches the head only")
    elif head is None or not head.fits:
        plan.notes.append("no sparse-update search: the head alone does not fit, and every "
                          "searched scheme trains it")
    else:
        def make(name, spec, source):
            compiled = api.compile_unchecked(model, board=b, sram=sram, flash=flash,
                                             train=spec)
            return _scheme(compiled, source, spec, name), compiled

        start = time.perf_counter()
        say(f"train-plan: searching sparse updates of {plural(len(layers), 'layer')} below "
            f"the head (op {', op '.join(str(op) for op, _ in layers)})")
        found_sparse, plan.search = sparse_search(
            layers, head, compiled_schemes[0][1].training.head, make, trainer.run, seen)
        plan.search["seconds"] = time.perf_counter() - start
        plan.schemes += found_sparse
    measured = [s for s in plan.schemes if s.fits and s.accuracy_after is not None]
    best = max(measured, key=lambda s: (round(s.accuracy_after, 9), -s.training_peak_sram_bytes))
    plan.pick = best.scheme
    return plan


def _size(n: int | None) -> str:
    return "unlimited" if n is None else f"{n:,} B"


def write_scheme(scheme: Scheme, path) -> str:
    """Write a searched scheme's JSON where `--train` reads it (the path checked by the
    caller, outdir.check_file, before the long work); the path, as given."""
    import json
    from pathlib import Path

    try:
        Path(path).write_text(json.dumps(scheme.sparse, indent=2) + "\n")
    except OSError as exc:
        raise McunetError(f"--out {path}: cannot be written ({exc.strerror or exc})") from None
    return str(path)


SOURCE = {"named": "", "given": "--scheme", "contribution": "contrib.", "searched": "searched"}


def table(plan: TrainPlan) -> str:
    w = max([8] + [len(s.scheme) for s in plan.schemes])
    head = (f"{'scheme':<{w}} {'from':<8} {'layers':<10} {'params':>8} {'train SRAM':>11} "
            f"{'flash':>9} {'fits':<5} {'lr':>6} {'val before':>10} {'val after':>9} "
            f"{'pred gain':>9} {'gain/KB':>8}")
    lines = [head, "-" * len(head)]
    for s in plan.schemes:
        measured = s.accuracy_after is not None
        lines.append(
            f"{s.scheme:<{w}} {SOURCE[s.source]:<8} {','.join(map(str, s.layers)):<10} "
            f"{s.parameters:>8,} {s.training_peak_sram_bytes:>11,} {s.training_flash_bytes:>9,} "
            f"{'yes' if s.fits else 'no':<5} {(f'{s.lr:g}' if measured else '-'):>6} "
            f"{(f'{s.accuracy_before:.1%}' if measured else '-'):>10} "
            f"{(f'{s.accuracy_after:.1%}' if measured else '-'):>9} "
            f"{(f'{100 * s.predicted_gain:+.1f}' if s.predicted is not None else '-'):>9} "
            f"{(f'{s.gain_per_kb:+.3f}' if measured else '-'):>8}"
            + ("" if measured else f"  ({s.over})"))
    for spec, why in plan.refused.items():
        lines.append(f"{spec}: refused: {why}")
    if plan.search:
        r = plan.search
        lines.append(f"search: {plural(len(r['contributions']), 'contribution')} measured "
                     f"(the head plus one update), {plural(r['combinations'], 'combination')} "
                     f"predicted, {r['compiled']} compiled for memory, {r['trained']} trained, "
                     f"in {r['seconds']:.1f} s")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)

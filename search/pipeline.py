"""The whole search, phase by phase, with its state in OUT so a killed run resumes.

  stage 1 (space_opt)  ->  supernet training  ->  evolution  ->  fine-tune  ->  int8 export

OUT/state.json records the configuration, the training plan (steps per phase, fixed once
measured) and each finished phase's result; supernet and fine-tune checkpoints sit beside
it. With a time budget, each phase's number of steps is set from the speed measured in its
first steps, so the amount of training depends on the machine; give explicit step counts for
bit-identical reruns with the same seed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from mcunet.boards import get_board
from mcunet.budget import Budget
from mcunet.errors import McunetError
from mcunet.target import HOST, TARGETS, Target

from .budget import CostCache, default_patch, export_plan
from .space import Arch, SearchSpace, default_space

# Shares of the time budget (the rest, after stage 1, goes to fine-tuning and export).
SUPERNET_SHARE = 0.28
EVOLUTION_SHARE = 0.10
EXPORT_RESERVE_S = 60.0  # conversion, int8 evaluation (reference kernels), plan, plot
PROBE_STEPS = 8
# Training speed falls with a network's MACs: about 1.4e9 / MACs images per second on two
# CPU cores. So that fine-tuning gets several epochs of a 60k-image dataset within the time
# budget, the search caps MACs at this many per second of budget (900 s: 2.7 M MACs).
MACS_PER_BUDGET_SECOND = 3000
# The speed that cap is sized for: training images a second times MACs (2 cores). With --ray the
# cap is scaled by one task's measured speed against it (RayEngine.measure_cap).
REFERENCE_MACS_IMAGES = 1.4e9


def patch_plans(time_budget_s: float) -> int:
    """How many patch-based plans a search may make (each takes about a second): one per 20 s
    of budget, at least 4."""
    return max(4, int(time_budget_s / 20))


@dataclass
class SearchConfig:
    dataset: str
    sram_bytes: int
    flash_bytes: int
    out: str
    latency_ms: float | None = None
    clock_hz: int | None = None
    time_budget_s: float = 900.0
    seed: int = 0
    board: str | None = None
    # Explicit plan (None: derived from the time budget).
    supernet_steps: int | None = None
    finetune_steps: int | None = None
    generations: int | None = None
    population: int = 16
    stage1_samples: int = 12
    train_subset: int | None = None  # use only this many training images (tests)
    val_subset: int = 2000  # validation images that rank candidates
    recal_images: int = 500
    space: dict | None = None  # a SearchSpace as a dict (None: the default for the dataset)
    max_macs: int | None = None  # None: from the time budget (MACS_PER_BUDGET_SECOND)
    # Distributed (search/distributed.py): a Ray address or "auto"; None: in-process.
    ray: str | None = None
    ray_cpus: float = 1.0  # resources of one Ray task
    ray_gpus: float = 0.0
    finetune_top: int = 3  # with Ray: the best this many candidates are fine-tuned in parallel
    ray_replicas: int | None = None  # with Ray: supernet replicas (None: one per task slot)
    # "evolution", or "random": the random-search baseline (scripts/bench_search.py), the same
    # number of candidates drawn at random from the same space (search/evolution.py).
    strategy: str = "evolution"

    @property
    def target(self) -> Target:
        """The board's core: candidates are planned with its kernels (the DSP kernels'
        scratch counts)."""
        return TARGETS[get_board(self.board).core] if self.board else HOST

    @property
    def budget(self) -> Budget:
        cap = self.max_macs or int(MACS_PER_BUDGET_SECOND * self.time_budget_s)
        return Budget(self.sram_bytes, self.flash_bytes, self.latency_ms, self.clock_hz,
                      max_macs=cap)

    def fingerprint(self) -> dict:
        """What must not change between a run and its --resume."""
        d = asdict(self)
        for k in ("out", "time_budget_s", "ray", "ray_cpus", "ray_gpus", "ray_replicas"):
            d.pop(k)
        if self.ray:  # a distributed search proposes and fine-tunes differently
            d["engine"] = "ray"
        else:
            d.pop("finetune_top")
        if d["strategy"] == "evolution":  # as searches before the field were recorded
            d.pop("strategy")
        d["max_macs"] = self.budget.max_macs  # the cap, also when the time budget sets it
        return json.loads(json.dumps(d))  # as state.json stores it (tuples become lists)


class State:
    """OUT/state.json, written atomically after every step of progress."""

    def __init__(self, folder: Path):
        self.path = folder / "state.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    def __getitem__(self, k):
        return self.data[k]

    def get(self, k, default=None):
        return self.data.get(k, default)

    def __setitem__(self, k, v):
        self.data[k] = v
        self.save()


@dataclass
class Clock:
    """The time budget across resumes: seconds spent before plus this session's."""
    budget: float
    spent_before: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    @property
    def spent(self) -> float:
        return self.spent_before + time.perf_counter() - self.start

    @property
    def left(self) -> float:
        return self.budget - self.spent


def progress_bar(total, desc, enabled):
    """A tqdm bar on stderr for a phase of the search (off with --quiet)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=True, dynamic_ncols=True)


def _seconds_per_step(train, timed_steps: int) -> float:
    """Seconds a training step takes: train(stop_at=N) runs the first PROBE_STEPS (tracing
    included, not timed), then `timed_steps` more, timed (resumed runs continue from their
    checkpoint)."""
    r = train(stop_at=PROBE_STEPS)
    r = train(stop_at=max(r["last"], PROBE_STEPS) + timed_steps)
    return r["seconds"] / max(1, r["last"] - r["first"])


def step_ticker(bar, save_time=None, every: int = 50):
    """A training loop's progress callback that moves `bar` (its total once it is known) and,
    every `every` steps (as often as the loops checkpoint), records the time spent, so a
    killed run's time counts against the budget when it resumes."""
    def tick(step, total, loss, acc):
        if total < 10 ** 9 and bar.total != total:
            bar.total = total
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
        if save_time is not None and step % every == 0:
            save_time()
    return tick


class Data:
    """The dataset as the phases use it: the training images prepared at an input resolution
    (once per resolution), the batch-norm recalibration images, the validation subset that
    ranks candidates."""

    def __init__(self, ds, train, cfg: SearchConfig):
        self.ds, self.train = ds, train
        self.seed, self.recal_images = cfg.seed, cfg.recal_images
        self.val_rank = ds.val.subset(cfg.val_subset, cfg.seed)
        self._x: dict = {}

    def _prepared(self, name: str, res: int, x):
        from .data import prepare
        if (name, res) not in self._x:
            self._x[name, res] = prepare(x, res)
        return self._x[name, res]

    def x_train(self, res: int) -> np.ndarray:
        return self._prepared("train", res, self.train.x)

    def x_recal(self, res: int) -> np.ndarray:
        x = self.x_train(res)
        return x[np.random.default_rng(self.seed).permutation(len(x))[:self.recal_images]]

    def x_val_rank(self, res: int) -> np.ndarray:
        return self._prepared("val_rank", res, self.val_rank.x)

    def x_trains(self, resolutions) -> dict:
        return {r: self.x_train(r) for r in resolutions}


def dataset_and_space(cfg: SearchConfig):
    """(dataset, training split, search space) of a configuration."""
    from .data import load_dataset

    ds = load_dataset(cfg.dataset, seed=cfg.seed)
    train = ds.train.subset(cfg.train_subset, cfg.seed) if cfg.train_subset else ds.train
    h, w, c = ds.shape
    space = (SearchSpace.from_dict(cfg.space) if cfg.space else
             default_space(c, ds.num_classes, max(h, w)))
    if space.in_channels != c or space.num_classes != ds.num_classes:
        space = replace(space, in_channels=c, num_classes=ds.num_classes)
    return ds, train, space


def dataset_line(ds, train) -> str:
    h, w, c = ds.shape
    return (f"dataset {ds.name}: {len(train)} train, {len(ds.val)} validation, "
            f"{len(ds.test) if ds.test is not None else 0} test images of {h}x{w}x{c}, "
            f"{ds.num_classes} classes")


def budget_line(budget: Budget) -> str:
    return (f"budget {budget.sram_bytes / 1024:g} KB SRAM, {budget.flash_bytes / 1024:g} KB flash "
            "(weights, constants and code), "
            f"at most {budget.max_macs / 1e6:.2f} M MACs")


def _plan_many(engine, costs: CostCache):
    return lambda requests: engine.plan_many(costs.space, costs.target, requests)


def run_stage1(cfg: SearchConfig, space: SearchSpace, costs: CostCache, engine, progress,
               label: str = "stage 1: space") -> dict:
    """Stage 1 (width and resolution) for cfg's budget; what state.json keeps of it."""
    from .space_opt import optimise_space

    budget = cfg.budget
    n = len(space.width_choices) * len(space.resolution_choices) * cfg.stage1_samples
    with progress_bar(n, label, progress) as bar:
        prefetch = None if engine is None else \
            (lambda archs, limit: costs.plan_batch(archs, budget, _plan_many(engine, costs), limit))
        (width, res), stats = optimise_space(space, budget, costs, cfg.stage1_samples,
                                             cfg.seed, progress=bar.update, prefetch=prefetch)
    return {"width": width, "resolution": res, "pairs": [s.to_dict() for s in stats]}


def supernet_phase(cfg: SearchConfig, state: State, clock: Clock, save_time, net, data: Data,
                   resolutions: tuple[int, ...], engine, progress, log) -> None:
    """Train the supernet (SUPERNET_SHARE of the time left, or cfg.supernet_steps), in-process
    or data-parallel on Ray, checkpointed in cfg.out; afterwards net holds the trained weights
    (from the checkpoint where a resumed run or Ray trained them)."""
    from .train import Deadline, train_supernet

    out = Path(cfg.out)
    train = data.train
    res = resolutions if len(resolutions) > 1 else resolutions[0]
    plan = state.data.setdefault("plan", {})
    resumed = bool(state.get("supernet_done"))
    trainer = None
    if engine is not None and not state.get("supernet_done"):
        trainer = engine.supernet_trainer(net.space, cfg.seed, train, res, out, cfg.ray_replicas)
        log(f"supernet: data-parallel on {trainer.world} Ray replica"
            f"{'s' if trainer.world != 1 else ''}")
    fit = trainer.train if trainer is not None else partial(train_supernet, net)
    if not state.get("supernet_done"):
        x_cache = data.x_trains(resolutions)
        total = cfg.supernet_steps or plan.get("supernet_steps")
        with progress_bar(total, "supernet", progress) as bar:
            tick = step_ticker(bar, save_time)
            warmup = 50 if not cfg.supernet_steps else max(1, cfg.supernet_steps // 10)
            if total is None:  # measure the speed (after tracing), then fix the plan
                per_step = _seconds_per_step(partial(
                    fit, train, res, 10 ** 9, cfg.seed, out, warmup=warmup,
                    progress=tick, x_cache=x_cache), 4)
                seconds = SUPERNET_SHARE * clock.left
                total = max(PROBE_STEPS + 4, int(seconds / per_step))
                plan["supernet_steps"] = total
                plan["supernet_step_s"] = per_step
                plan["supernet_until_s"] = clock.spent + seconds
                state["plan"] = plan
                bar.total = total
                bar.refresh()
            deadline = None if cfg.supernet_steps else \
                Deadline(time.perf_counter() + plan["supernet_until_s"] - clock.spent)
            try:
                result = fit(train, res, total, cfg.seed, out, warmup=warmup,
                             progress=tick, x_cache=x_cache, deadline=deadline)
            finally:
                if trainer is not None:
                    trainer.close()  # the replicas' CPUs go to the evaluation's tasks
            plan["supernet_steps"] = result["steps"]
        state.data["supernet"] = result
        state["supernet_done"] = True
        save_time()
        log(f"supernet: {result['steps']} steps, {result['seconds']:.0f} s"
            + (f" at resolutions {', '.join(map(str, resolutions))} in turn"
               if len(resolutions) > 1 else ""))
    if resumed or trainer is not None:  # the weights from the checkpoint
        train_supernet(net, train, res, 0, cfg.seed, out, warmup=1)


def share_supernet(engine, net) -> None:
    """With Ray: the trained weights, once, for every task."""
    weights = {k: v.numpy() for k, v in net.vars.items()}
    digest = hashlib.sha256()
    for k in sorted(weights):
        digest.update(k.encode())
        digest.update(np.ascontiguousarray(weights[k]).tobytes())
    engine.set_supernet(digest.hexdigest(), weights)


def _finetune_top(cfg, engine, state, evo, sub, net, data: Data, res, clock, save_time, log):
    """With Ray: the best cfg.finetune_top distinct candidates fine-tuned in parallel (each
    task from its own checkpoint folder, OUT/finetune-I), the best on validation kept (ties:
    the better ranked). Returns (its candidate, its Keras model)."""
    from .evolution import rank
    from .train import finetune

    out = Path(cfg.out)
    x_recal = data.x_recal(res)
    top, keys = [], set()
    for c in sorted(evo.history, key=rank, reverse=True):
        if sub.key(c.arch) not in keys and len(top) < cfg.finetune_top:
            keys.add(sub.key(c.arch))
            top.append(c)
    folders = [out / f"finetune-{i}" for i in range(len(top))]
    weights = None
    if not state.get("finetune_done"):
        seconds = None
        if not cfg.finetune_steps:
            waves = -(-len(top) // engine.workers())
            seconds = max(10.0, (clock.left - EXPORT_RESERVE_S) / waves)
        results = engine.finetune_many(net.space, cfg.seed, [c.arch for c in top], x_recal,
                                       data.train, res, cfg.finetune_steps, seconds,
                                       [str(f) for f in folders], data.x_val_rank(res),
                                       data.val_rank.y)
        pick = max(range(len(top)), key=lambda i: (results[i]["val_accuracy"], -i))
        weights = results[pick]["weights"]
        state.data["finetune"] = {
            **results[pick]["result"], "chosen": pick,
            "top": [{"arch_key": sub.key(c.arch), "supernet_val_accuracy": c.accuracy,
                     "val_accuracy": r["val_accuracy"], "steps": r["result"]["steps"]}
                    for c, r in zip(top, results)]}
        state["finetune_done"] = True
        save_time()
    pick = state["finetune"]["chosen"]
    for i, t in enumerate(state["finetune"]["top"]):
        log(f"fine-tune {i}: {t['arch_key']}: {100 * t['val_accuracy']:.2f}% validation (float)"
            + (" (kept)" if i == pick else ""))
    best = top[pick]
    net.recalibrate(best.arch, x_recal)
    model = net.to_keras(best.arch)
    if weights is not None:
        model.set_weights(weights)
    else:  # resumed after the fine-tuning: its checkpoint
        finetune(model, data.train, res, 0, cfg.seed, folders[pick], warmup=1)
    return best, model


def run_search(cfg: SearchConfig, resume: bool = False, progress: bool = True,
               log=print) -> dict:
    """Run (or resume) the search; returns the summary also written to OUT/model.json."""
    engine = None
    if cfg.ray:
        _check_resume(cfg, resume)
        from .distributed import RayEngine
        engine = RayEngine(cfg.ray, cfg.ray_cpus, cfg.ray_gpus)
    try:
        return _run_search(cfg, resume, progress, log, engine)
    finally:
        if engine is not None:
            engine.shutdown()


def _check_resume(cfg: SearchConfig, resume: bool, what: str = "a search") -> None:
    out = Path(cfg.out)
    if out.exists() and (out / "state.json").exists() and not resume:
        raise McunetError(f"{out} already holds {what}; add --resume to continue it or choose "
                          "another --out")
    if resume and not (out / "state.json").exists():
        raise McunetError(f"nothing to resume: {out} holds no search (state.json)")


def _run_search(cfg: SearchConfig, resume: bool, progress: bool, log, engine) -> dict:
    from .supernet import Supernet
    from .train import setup_tf

    out = Path(cfg.out)
    _check_resume(cfg, resume)
    out.mkdir(parents=True, exist_ok=True)
    state = State(out)
    if engine is not None and cfg.max_macs is None:  # the cap follows the workers' speed
        if resume and state.get("config", {}).get("max_macs"):
            cfg = replace(cfg, max_macs=state["config"]["max_macs"])
        else:
            cap, measured = engine.measure_cap(cfg.time_budget_s)
            log(cap_line(cap, measured))
            cfg = replace(cfg, max_macs=cap)
            state.data["throughput"] = measured
    if resume and state.get("config") != cfg.fingerprint():
        raise McunetError(f"{out} holds a search with other settings; resume it with the same "
                          f"dataset, budget and seed ({state.get('config')})")
    state.data.setdefault("config", cfg.fingerprint())
    clock = Clock(cfg.time_budget_s, state.get("spent_s", 0.0))

    def save_time():
        state.data["spent_s"] = clock.spent
        state.save()

    # -- data and space -----------------------------------------------------------------------
    ds, train, space = dataset_and_space(cfg)
    budget = cfg.budget
    costs = CostCache(space, patch_plans=patch_plans(cfg.time_budget_s), target=cfg.target)
    if state.get("costs"):
        costs.load(state["costs"])
    log(f"{dataset_line(ds, train)}; {budget_line(budget)}; planner patch mode {default_patch()}")
    if engine is not None:
        log(engine.describe())

    # -- stage 1: width and resolution ----------------------------------------------------------
    if "stage1" not in state.data:
        stage1 = run_stage1(cfg, space, costs, engine, progress)
        state.data["costs"] = costs.to_dict()
        state["stage1"] = stage1
        save_time()
    width, res = state["stage1"]["width"], state["stage1"]["resolution"]
    sub = space.restrict(width, res)
    costs.space = sub
    log(f"stage 1: width {width:g}, resolution {res} "
        f"(highest mean MACs of the sampled networks that fit)")

    setup_tf()
    import tensorflow as tf
    tf.keras.utils.set_random_seed(cfg.seed)
    data = Data(ds, train, cfg)
    net = Supernet(sub, seed=cfg.seed)

    # -- supernet -------------------------------------------------------------------------------
    supernet_phase(cfg, state, clock, save_time, net, data, (res,), engine, progress, log)
    if engine is not None:
        share_supernet(engine, net)

    def save_costs():
        state.data["costs"] = costs.to_dict()

    return specialise(cfg, state, clock, save_time, save_costs, net, sub, costs, data, engine,
                      progress, log, state["stage1"])


def cap_line(cap: int, measured: dict) -> str:
    return (f"compute cap: {cap / 1e6:.2f} M MACs (a task trains {measured['scale']:.2f}x the "
            f"speed the in-process cap of {MACS_PER_BUDGET_SECOND} MACs per second of budget is "
            "sized for)")


def specialise(cfg: SearchConfig, state: State, clock: Clock, save_time, save_costs, net,
               sub: SearchSpace, costs: CostCache, data: Data, engine, progress, log,
               stage1: dict, label: str = "") -> dict:
    """The search after the supernet, for cfg's budget and in cfg.out: the evolution in `sub`
    on the trained supernet `net` (whose space may be larger: a budget sweep's), the winner's
    fine-tuning, its int8 export, plan and Pareto plot. `state` and `clock` are this budget's
    (a sweep's budget has its own, in its folder). Returns model.json's content."""
    from .evolution import EvolutionState, evolve, evolve_batched
    from .export import int8_accuracy, io_quant, to_int8_tflite, write_model
    from .plot import pareto_plot
    from .train import Deadline, finetune, keras_accuracy

    out = Path(cfg.out)
    ds, train = data.ds, data.train
    budget = cfg.budget
    res = sub.resolution_choices[0]
    h, w = ds.shape[:2]
    c = ds.shape[2]
    x_train, x_recal = data.x_train(res), data.x_recal(res)
    val_rank, x_val_rank = data.val_rank, data.x_val_rank(res)
    plan = state.data.setdefault("plan", {})
    bar_label = f"{label}: " if label else ""

    # -- evolution ------------------------------------------------------------------------------
    def fitness(arch: Arch) -> float:
        net.recalibrate(arch, x_recal)
        return net.accuracy(arch, x_val_rank, val_rank.y)

    if engine is not None:
        plan_many = _plan_many(engine, costs)

        def fitness_many(archs: list[Arch]) -> list[float]:
            return engine.evaluate_many(net.space, cfg.seed, archs, x_recal, x_val_rank,
                                        val_rank.y)

        def run_evolution(generations, **kw):
            return evolve_batched(sub, budget, costs, fitness_many, plan_many, generations,
                                  cfg.population, seed=cfg.seed, strategy=cfg.strategy, **kw)
    else:
        def run_evolution(generations, **kw):
            return evolve(sub, budget, costs, fitness, generations, cfg.population,
                          seed=cfg.seed, strategy=cfg.strategy, **kw)

    evo = EvolutionState.from_dict(state["evolution"]) if state.get("evolution") else EvolutionState()
    if not state.get("evolution_done"):
        generations = cfg.generations or plan.get("generations")
        with progress_bar(None, bar_label + "evolution", progress) as bar:
            def on_gen(s: EvolutionState):
                nonlocal generations
                if generations is None:  # after the first generation: fix the plan
                    per_gen = max(clock.spent - plan["evolution_start"], 1e-3)
                    generations = max(2, int(EVOLUTION_SHARE * cfg.time_budget_s / per_gen))
                    plan["generations"] = generations
                state.data["evolution"] = s.to_dict()
                save_costs()
                save_time()
                bar.set_postfix(gen=f"{s.generation}/{generations or '?'}",
                                best=f"{s.best.accuracy:.3f}" if s.best else "-")

            plan.setdefault("evolution_start", clock.spent)
            if generations is None:
                evo = run_evolution(1, state=evo, on_generation=on_gen, on_candidate=bar.update)
            evo = run_evolution(generations, state=evo, on_generation=on_gen,
                                on_candidate=bar.update)
        state["evolution_done"] = True
    best = evo.best
    if best is None:
        raise McunetError(f"{label + ': ' if label else ''}the evolutionary search found no "
                          "sub-network within the budget")
    log(f"{bar_label}evolution: {len(evo.history)} candidates, best {sub.key(best.arch)}: "
        f"{100 * best.accuracy:.2f}% (supernet, validation), "
        f"{best.peak_sram_bytes} B SRAM, {best.flash_bytes} B flash + about "
        f"{best.code_bytes or 0} B code")

    # -- fine-tune ------------------------------------------------------------------------------
    if engine is not None:
        best, model = _finetune_top(cfg, engine, state, evo, sub, net, data, res, clock,
                                    save_time, log)
    else:
        net.recalibrate(best.arch, x_recal)
        model = net.to_keras(best.arch)
    if engine is None and not state.get("finetune_done"):
        total = cfg.finetune_steps or plan.get("finetune_steps")
        warmup = 30 if not cfg.finetune_steps else max(1, cfg.finetune_steps // 10)
        with progress_bar(total, bar_label + "fine-tune", progress) as bar:
            tick = step_ticker(bar, save_time)
            if total is None:
                per_step = _seconds_per_step(partial(
                    finetune, model, train, res, 10 ** 9, cfg.seed, out, warmup=warmup,
                    progress=tick, x_cache=x_train), 20)
                total = max(PROBE_STEPS + 4, int((clock.left - EXPORT_RESERVE_S) / per_step))
                plan["finetune_steps"] = total
                plan["finetune_step_s"] = per_step
                state["plan"] = plan
                bar.total = total
                bar.refresh()
            deadline = None if cfg.finetune_steps else \
                Deadline(time.perf_counter() + clock.left - EXPORT_RESERVE_S)
            result = finetune(model, train, res, total, cfg.seed, out, warmup=warmup,
                              progress=tick, x_cache=x_train, deadline=deadline)
            plan["finetune_steps"] = result["steps"]
        state.data["finetune"] = result
        state["finetune_done"] = True
        save_time()
    elif engine is None:
        finetune(model, train, res, 0, cfg.seed, out, warmup=1)  # restores the weights

    # -- export ---------------------------------------------------------------------------------
    from .data import prepare

    x_val = prepare(ds.val.x, res)
    float_val = keras_accuracy(model, x_val, ds.val.y)
    rep = x_train[np.random.default_rng(cfg.seed + 1).permutation(len(x_train))[:200]]
    tflite = to_int8_tflite(model, rep)
    # With TFLite's reference kernels, i.e. exactly what the generated C computes (about 3 ms
    # an image): the validation figure on the ranking subset, the test figure on all of it.
    int8_val = int8_accuracy(tflite, x_val_rank, val_rank.y)
    int8_test = int8_accuracy(tflite, prepare(ds.test.x, res), ds.test.y) \
        if ds.test is not None else None
    model_path = out / "model.tflite"
    model_path.write_bytes(tflite)
    exported = export_plan(model_path, cfg.target, cfg.board, budget)
    compiled, fits = exported.compiled, exported.fits(budget)
    in_scale, in_zp, out_scale, out_zp = io_quant(tflite)
    meta = {
        "format": "mcunet-search/1",
        "dataset": ds.name, "dataset_source": ds.source, "classes": ds.classes,
        "input": {"shape": [1, res, res, c], "dtype": "int8", "layout": "NHWC",
                  "resolution": res, "source_size": [h, w],
                  "resize": "bilinear" if (h, w) != (res, res) else "none",
                  "normalisation": "x = pixel / 255 (0..1); q = round(x / scale) + zero_point",
                  "scale": in_scale, "zero_point": in_zp},
        "output": {"kind": "softmax probabilities", "dtype": "int8", "scale": out_scale,
                   "zero_point": out_zp},
        "arch": best.arch.to_dict(), "arch_key": sub.key(best.arch), "space": sub.to_dict(),
        "budget": {"sram_bytes": budget.sram_bytes, "flash_bytes": budget.flash_bytes,
                   "latency_ms": budget.latency_ms, "max_macs": budget.max_macs,
                   "board": cfg.board},
        "measured": {**exported.measured(budget),
                     "planned_from_architecture": {"peak_sram_bytes": best.peak_sram_bytes,
                                                   "flash_bytes": best.flash_bytes,
                                                   "code_bytes_estimated": best.code_bytes},
                     "val_accuracy_float": float_val, "val_accuracy_int8": int8_val,
                     "val_int8_images": len(val_rank),
                     "test_accuracy_int8": int8_test,
                     "supernet_val_accuracy": best.accuracy},
        "seed": cfg.seed, "plan": plan, "candidates": len(evo.history),
        "stage1": stage1,
    }
    chosen = next((c for c in evo.history if sub.key(c.arch) == sub.key(best.arch)), best)
    pareto_plot(out / "pareto.png", evo.history, budget.sram_bytes, chosen,
                (compiled.peak_sram_bytes, int8_val),
                title=f"{ds.name}: {budget.sram_bytes // 1024} KB SRAM, "
                      f"{budget.flash_bytes // 1024} KB flash")
    if engine is not None:
        meta["distributed"] = {"engine": "ray", "tasks_at_once": engine.workers(),
                               "cpus_per_task": cfg.ray_cpus, "gpus_per_task": cfg.ray_gpus,
                               "finetuned": state["finetune"]["top"],
                               "throughput": state.get("throughput")}
    meta["seconds"] = round(clock.spent, 1)
    write_model(out, tflite, meta)
    state.data["done"] = True
    save_time()
    if not fits:
        raise McunetError(exported.over_budget(f"{label + ': ' if label else ''}the exported "
                                               "model", budget, best))
    return meta

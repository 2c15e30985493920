"""Evolutionary search over the supernet's sub-networks under SRAM, flash and latency budgets.

Every candidate's memory is planned by mcunet (search/budget.py) on the graph built straight
from its architecture; its accuracy is the supernet's, with batch norm recalibrated, on the
validation split (never the test split). Each generation keeps the best `parents`, and fills
the population with mutations and crossovers that fit. The state after every generation is a
plain dict, so a killed search resumes at the generation it reached.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from mcunet.errors import McunetError

from .budget import Budget, CostCache
from .space import Arch, SearchSpace


@dataclass
class Candidate:
    arch: Arch
    accuracy: float
    peak_sram_bytes: int
    flash_bytes: int
    macs: int
    patch: str
    generation: int
    code_bytes: int | None = None  # the library's code, estimated (search.budget.Cost)

    def to_dict(self) -> dict:
        return {"arch": self.arch.to_dict(), "accuracy": self.accuracy,
                "peak_sram_bytes": self.peak_sram_bytes, "flash_bytes": self.flash_bytes,
                "macs": self.macs, "patch": self.patch, "generation": self.generation,
                "code_bytes": self.code_bytes}

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        return cls(arch=Arch.from_dict(d["arch"]), **{k: v for k, v in d.items() if k != "arch"})


@dataclass
class EvolutionState:
    generation: int = 0  # generations finished
    population: list[Candidate] = field(default_factory=list)
    history: list[Candidate] = field(default_factory=list)  # every candidate evaluated

    def to_dict(self) -> dict:
        return {"generation": self.generation,
                "population": [c.to_dict() for c in self.population],
                "history": [c.to_dict() for c in self.history]}

    @classmethod
    def from_dict(cls, d: dict) -> "EvolutionState":
        return cls(d["generation"], [Candidate.from_dict(c) for c in d["population"]],
                   [Candidate.from_dict(c) for c in d["history"]])

    @property
    def best(self) -> Candidate | None:
        return max(self.population, key=rank, default=None)


STRATEGIES = ("evolution", "random")


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise McunetError(f"unknown search strategy {strategy!r}; choose one of "
                          f"{', '.join(STRATEGIES)}")


def rank(c: Candidate):
    return (c.accuracy, -c.peak_sram_bytes, -c.macs)


def _fitting(space: SearchSpace, make: Callable[[], Arch], costs: CostCache, budget: Budget,
             seen: set[str], tries: int = 200) -> Arch | None:
    for _ in range(tries):
        arch = make()
        key = space.key(arch)
        if key in seen:
            continue
        if costs(arch, budget).fits(budget):
            seen.add(key)
            return arch
    return None


def evolve(space: SearchSpace, budget: Budget, costs: CostCache,
           fitness: Callable[[Arch], float], generations: int, population: int = 16,
           parents: int = 4, mutate_prob: float = 0.2, seed: int = 0,
           state: EvolutionState | None = None,
           on_generation: Callable[[EvolutionState], None] | None = None,
           on_candidate: Callable[[], None] | None = None,
           strategy: str = "evolution") -> EvolutionState:
    """Run (or continue) the search until `generations` generations are done. strategy
    "random" is the random-search baseline: every generation after the first draws as many
    fresh random networks as evolution would breed children (population - parents), so both
    evaluate the same number of candidates; the best of all is kept."""
    check_strategy(strategy)
    state = state or EvolutionState()
    seen = {space.key(c.arch) for c in state.history}

    def evaluate(arch: Arch, gen: int) -> Candidate:
        cost = costs(arch, budget)
        cand = Candidate(arch, fitness(arch), cost.peak_sram_bytes, cost.flash_bytes, cost.macs,
                         cost.patch, gen, cost.code_bytes)
        state.history.append(cand)
        if on_candidate:
            on_candidate()
        return cand

    while state.generation < generations:
        gen = state.generation
        rng = random.Random(f"{seed}/evolution/{gen}")  # per generation: resumable
        if not state.population:
            archs = [a for a in (_fitting(space, lambda: space.sample(rng), costs, budget, seen)
                                 for _ in range(population)) if a is not None]
            extra = space.smallest()  # a safe seed, and a baseline on the plot
            if space.key(extra) not in seen and costs(extra, budget).fits(budget):
                seen.add(space.key(extra))
                archs.append(extra)
            pop = [evaluate(a, gen) for a in archs]
        elif strategy == "random":
            keep = sorted(state.population, key=rank, reverse=True)[:parents]
            children = [evaluate(a, gen) for a in
                        (_fitting(space, lambda: space.sample(rng), costs, budget, seen)
                         for _ in range(population - len(keep))) if a is not None]
            pop = keep + children
        else:
            keep = sorted(state.population, key=rank, reverse=True)[:parents]
            children = []
            for i in range(population - len(keep)):
                if i % 2 == 0 or len(keep) < 2:
                    def make():
                        return space.mutate(rng.choice(keep).arch, rng, mutate_prob)
                else:
                    def make():
                        a, b = rng.sample(keep, 2)
                        return space.crossover(a.arch, b.arch, rng)
                arch = _fitting(space, make, costs, budget, seen, tries=50)
                if arch is not None:
                    children.append(evaluate(arch, gen))
            pop = keep + children
        state.population = pop
        state.generation = gen + 1
        if on_generation:
            on_generation(state)
    return state


def evolve_batched(space: SearchSpace, budget: Budget, costs: CostCache,
                   fitness_many: Callable[[list[Arch]], list[float]],
                   plan_many: Callable, generations: int, population: int = 16,
                   parents: int = 4, mutate_prob: float = 0.2, seed: int = 0,
                   state: EvolutionState | None = None,
                   on_generation: Callable[[EvolutionState], None] | None = None,
                   on_candidate: Callable[[], None] | None = None,
                   tries: int = 50, strategy: str = "evolution") -> EvolutionState:
    """evolve() for a distributed search: each generation's candidates are proposed in
    batches (drawn from the generation's random stream without looking at their cost), a
    batch is planned at once (CostCache.plan_batch with plan_many: Ray tasks), the fitting
    new ones are taken in proposal order, and the generation's candidates are evaluated at
    once by fitness_many (Ray tasks). Nothing depends on which task finishes first, so a seed
    gives one result whatever the number of workers (not evolve()'s: its proposals stop at
    the first that fits). strategy as evolve()'s."""
    check_strategy(strategy)
    state = state or EvolutionState()
    seen = {space.key(c.arch) for c in state.history}

    def take(propose: Callable[[int], Arch], wanted: int) -> list[Arch]:
        chosen: list[Arch] = []
        drawn = 0
        while len(chosen) < wanted and drawn < tries * wanted:
            batch = [propose(drawn + j) for j in range(2 * (wanted - len(chosen)))]
            drawn += len(batch)
            costs.plan_batch(batch, budget, plan_many)
            for arch in batch:
                key = space.key(arch)
                if len(chosen) < wanted and key not in seen and costs(arch, budget).fits(budget):
                    seen.add(key)
                    chosen.append(arch)
        return chosen

    while state.generation < generations:
        gen = state.generation
        rng = random.Random(f"{seed}/evolution/{gen}")
        if not state.population:
            archs = take(lambda i: space.sample(rng), population)
            extra = space.smallest()
            if space.key(extra) not in seen and costs(extra, budget).fits(budget):
                seen.add(space.key(extra))
                archs.append(extra)
            keep = []
        else:
            keep = sorted(state.population, key=rank, reverse=True)[:parents]

            def propose(i: int) -> Arch:
                if strategy == "random":
                    return space.sample(rng)
                if i % 2 == 0 or len(keep) < 2:
                    return space.mutate(rng.choice(keep).arch, rng, mutate_prob)
                a, b = rng.sample(keep, 2)
                return space.crossover(a.arch, b.arch, rng)
            archs = take(propose, population - len(keep))
        accuracies = fitness_many(archs) if archs else []
        children = []
        for arch, acc in zip(archs, accuracies):
            cost = costs(arch, budget)
            cand = Candidate(arch, acc, cost.peak_sram_bytes, cost.flash_bytes, cost.macs,
                             cost.patch, gen, cost.code_bytes)
            state.history.append(cand)
            children.append(cand)
            if on_candidate:
                on_candidate()
        state.population = keep + children
        state.generation = gen + 1
        if on_generation:
            on_generation(state)
    return state


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """Candidates no other beats on both accuracy (higher) and peak SRAM (lower)."""
    front, best = [], -1.0
    for c in sorted(cands, key=lambda c: (c.peak_sram_bytes, -c.accuracy)):
        if c.accuracy > best:
            front.append(c)
            best = c.accuracy
    return front

"""Hardware-aware subnet search: predictors in the loop (DyNAS-T's LINAS) vs NSGA-II vs random.

Objectives: maximise validation accuracy, minimise measured latency. A *measurement* runs
the real thing (BatchNorm-recalibrated accuracy, onnxruntime latency) and is what the
search budgets count. LINAS: measure a population, fit ridge predictors of accuracy and
latency on one-hot genome features, run NSGA-II (pymoo) on the predictors for many
generations, measure the most promising unmeasured candidates, refit, repeat. Plain NSGA-II
measures every candidate it evaluates; random search measures random genomes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .supernet import Space

Measure = Callable[[np.ndarray], tuple[float, float]]  # genome -> (accuracy, latency ms)


def features(space: Space, genomes: np.ndarray) -> np.ndarray:
    """One-hot per block (skipped, or kernel x expand choice) and per stage depth."""
    genomes = np.atleast_2d(np.asarray(genomes, dtype=np.int64))
    b, per = space.blocks, space.blocks_per_stage
    n, choices, depths = len(genomes), len(space.kernels) * len(space.expands) + 1, len(space.depths)
    stage_depth = np.asarray(space.depths)[genomes[:, 2 * b :]]  # n x stages
    block = np.arange(b)
    on = (block % per)[None, :] < stage_depth[:, block // per]  # n x blocks
    choice = np.where(on, 1 + genomes[:, :b] * len(space.expands) + genomes[:, b : 2 * b], 0)
    blocks = np.zeros((n, b, choices))
    np.put_along_axis(blocks, choice[:, :, None], 1.0, axis=2)
    stages = np.zeros((n, space.stages, depths))
    np.put_along_axis(stages, genomes[:, 2 * b :, None], 1.0, axis=2)
    return np.concatenate([blocks.reshape(n, -1), stages.reshape(n, -1)], axis=1)


class Predictor:
    """Ridge regression on genome features (scikit-learn)."""

    def __init__(self, space: Space, alpha: float = 1.0) -> None:
        from sklearn.linear_model import Ridge

        self.space = space
        self.model = Ridge(alpha=alpha)

    def fit(self, genomes: np.ndarray, values: np.ndarray) -> Predictor:
        self.model.fit(features(self.space, genomes), values)
        return self

    def predict(self, genomes: np.ndarray) -> np.ndarray:
        return self.model.predict(features(self.space, genomes))


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / np.abs(measured)))


@dataclass
class Archive:
    """Every measurement so far (canonical genomes), in order: what budgets count."""

    space: Space
    measure: Measure
    genomes: list[np.ndarray] = field(default_factory=list)
    results: list[tuple[float, float]] = field(default_factory=list)
    _seen: dict[bytes, int] = field(default_factory=dict)

    def __call__(self, genome) -> tuple[float, float]:
        g = self.space.active_genes(genome)
        key = g.tobytes()
        if key not in self._seen:
            self._seen[key] = len(self.results)
            self.genomes.append(g)
            self.results.append(self.measure(g))
        return self.results[self._seen[key]]

    def __len__(self) -> int:
        return len(self.results)

    def knows(self, genome) -> bool:
        return self.space.active_genes(genome).tobytes() in self._seen

    def index(self, genome) -> int:
        """Where ``genome`` (measured already) is in ``genomes`` and ``results``."""
        return self._seen[self.space.active_genes(genome).tobytes()]

    def points(self) -> np.ndarray:
        """(1 - accuracy, latency) per measurement: both minimised."""
        return np.array([(1 - a, lat) for a, lat in self.results])


def pareto(points: np.ndarray) -> np.ndarray:
    """Indexes of the non-dominated points (both objectives minimised)."""
    keep = []
    for i, p in enumerate(points):
        if not any(np.all(q <= p) and np.any(q < p) for j, q in enumerate(points) if j != i):
            keep.append(i)
    return np.array(keep, dtype=int)


def hypervolume(points: np.ndarray, reference: tuple[float, float]) -> float:
    from pymoo.indicators.hv import HV

    inside = points[np.all(points < np.asarray(reference), axis=1)] if len(points) else points
    return float(HV(ref_point=np.asarray(reference))(inside)) if len(inside) else 0.0


def hv_curve(archive: Archive, reference: tuple[float, float]) -> list[float]:
    points = archive.points()
    return [hypervolume(points[: n + 1], reference) for n in range(len(points))]


def _problem(space: Space, objectives: Callable[[np.ndarray], np.ndarray]):
    from pymoo.core.problem import Problem

    class SubnetProblem(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=space.genome_length, n_obj=2, xl=0, xu=space.upper_bounds, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            out["F"] = objectives(np.round(x).astype(np.int64))

    return SubnetProblem()


def _nsga2(space: Space, population: int, seed: int):
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling

    return NSGA2(
        pop_size=population,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )


def nsga2_measured(archive: Archive, *, budget: int, population: int = 16, seed: int = 0) -> Archive:
    """Plain NSGA-II: every candidate it evaluates is measured, until ``budget`` measurements."""
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.termination import NoTermination

    problem = _problem(archive.space, lambda xs: np.array([(1 - a, lat) for a, lat in map(archive, xs)]))
    algorithm = _nsga2(archive.space, population, seed)
    algorithm.setup(problem, termination=NoTermination(), seed=seed, verbose=False)
    while len(archive) < budget:
        offspring = algorithm.ask()
        Evaluator().eval(problem, offspring)
        algorithm.tell(infills=offspring)
    return archive


def random_search(archive: Archive, *, budget: int, seed: int = 0) -> Archive:
    rng = random.Random(seed)
    while len(archive) < budget:
        archive(archive.space.random(rng))
    return archive


def linas(
    archive: Archive,
    *,
    budget: int,
    initial: int = 16,
    per_iteration: int = 8,
    generations: int = 60,
    population: int = 48,
    seed: int = 0,
) -> tuple[Archive, dict[str, float]]:
    """LINAS: measure, fit predictors, search on predictors, measure the best predicted."""
    from pymoo.optimize import minimize

    rng = random.Random(seed)
    while len(archive) < min(initial, budget):
        archive(archive.space.random(rng))
    iteration = 0
    while len(archive) < budget:
        genomes = np.array(archive.genomes)
        accuracy = Predictor(archive.space).fit(genomes, np.array([a for a, _ in archive.results]))
        latency = Predictor(archive.space).fit(genomes, np.array([lat for _, lat in archive.results]))
        # minimize() below calls the objective within this iteration, with this iteration's predictors
        problem = _problem(archive.space, lambda xs: np.column_stack([1 - accuracy.predict(xs), latency.predict(xs)]))  # noqa: B023
        result = minimize(
            problem,
            _nsga2(archive.space, population, seed + iteration),
            ("n_gen", generations),
            seed=seed + iteration,
            verbose=False,
        )
        candidates = [x for x in np.round(np.atleast_2d(result.X)).astype(np.int64) if not archive.knows(x)]
        rng.shuffle(candidates)
        if not candidates:  # the predicted front is all measured: explore
            candidates = [archive.space.random(rng)]
        for genome in candidates[:per_iteration]:
            if len(archive) >= budget:
                break
            archive(genome)
        iteration += 1
    return archive, {"iterations": iteration}


def evals_to_reach(curve: list[float], target: float) -> int | None:
    """Measurements needed before the hypervolume first reaches ``target``."""
    for n, value in enumerate(curve, 1):
        if value >= target:
            return n
    return None

"""Hard-pair mining: interferers drawn more often from the classes the model confuses with the target.

Uniform interferers rarely put a target beside the one class it is confused with (41
classes, 1-3 interferers: a given pair comes up in about 1 mixture in 20 of its target's).
Training measures, for every one-step estimate it makes anyway, how much it improved
on the mixture; ``PairDifficulty`` keeps a running mean of that per (target class,
interferer class) pair, and the sampler draws interferers with probability rising with
it. A share of the draw stays uniform, so no pair is ever starved and the difficulty of
every pair keeps being measured.
"""
from __future__ import annotations

import numpy as np


class PairDifficulty:
    """Running difficulty (minus the improvement, dB) per (target class, interferer class).

    ``mining_share``: the part of the interferer draw weighed by difficulty (the rest is
    uniform); ``temperature_db``: how sharply (a pair 3 dB harder is e times likelier at the
    default); ``rate``: the weight of a new measurement in its pair's running mean."""

    def __init__(self, classes: list[str], mining_share: float = 0.5, temperature_db: float = 3.0,
                 rate: float = 0.2):
        if not 0.0 <= mining_share <= 1.0:
            raise ValueError(f"mining_share must lie in [0, 1], got {mining_share}")
        self.classes = list(classes)
        self.index = {name: number for number, name in enumerate(self.classes)}
        self.mining_share, self.temperature_db, self.rate = mining_share, temperature_db, rate
        size = len(self.classes)
        self.difficulty = np.zeros((size, size))
        self.measured = np.zeros((size, size), dtype=bool)

    def record(self, target_class: str, interferer_classes: tuple[str, ...] | list[str], improvement_db: float) -> None:
        """One estimate's improvement on its mixture is credited to each interferer beside the target."""
        if not np.isfinite(improvement_db) or target_class not in self.index:
            return
        row = self.index[target_class]
        for name in interferer_classes:
            column = self.index.get(name)
            if column is None:
                continue
            if self.measured[row, column]:
                self.difficulty[row, column] += self.rate * (-improvement_db - self.difficulty[row, column])
            else:
                self.difficulty[row, column] = -improvement_db
                self.measured[row, column] = True

    def interferer_probabilities(self, target_class: str, candidates: list[str]) -> np.ndarray:
        """Probabilities over ``candidates``; pairs never measured count as the mean measured one."""
        uniform = np.full(len(candidates), 1.0 / len(candidates))
        row = self.index.get(target_class)
        if row is None or not self.mining_share or not self.measured.any():
            return uniform
        typical = float(self.difficulty[self.measured].mean())
        columns = [self.index.get(name) for name in candidates]
        difficulty = np.array([self.difficulty[row, column] if column is not None and self.measured[row, column]
                               else typical for column in columns])
        weights = np.exp((difficulty - difficulty.max()) / self.temperature_db)
        mined = weights / weights.sum()
        return (1.0 - self.mining_share) * uniform + self.mining_share * mined

    def hardest(self, count: int = 5) -> list[tuple[str, str, float]]:
        """The most difficult measured pairs: (target, interferer, minus the improvement in dB)."""
        rows, columns = np.nonzero(self.measured)
        order = np.argsort(-self.difficulty[rows, columns])[:count]
        return [(self.classes[rows[i]], self.classes[columns[i]], float(self.difficulty[rows[i], columns[i]]))
                for i in order]

    def state(self) -> dict:
        return {"classes": self.classes, "difficulty": self.difficulty.copy(), "measured": self.measured.copy()}

    def load_state(self, state: dict) -> None:
        """Resume; pairs of classes the corpus no longer has are dropped."""
        for row, target in enumerate(state["classes"]):
            for column, interferer in enumerate(state["classes"]):
                if target in self.index and interferer in self.index and state["measured"][row, column]:
                    self.difficulty[self.index[target], self.index[interferer]] = state["difficulty"][row, column]
                    self.measured[self.index[target], self.index[interferer]] = True

"""Profiles: one switch between a CPU-minutes run and a paper-like run.

``quick`` is the default everywhere (the notebooks, the CLI and CI): the embedded scenes at
64x64, a narrow backbone and a budget that trains in well under a minute on two CPU cores.
``full`` uses budgets and widths closer to the papers, meant for a GPU and a real dataset.
"""

from __future__ import annotations

import dataclasses

from .train import TrainConfig


@dataclasses.dataclass(frozen=True)
class Profile:
    """How much data, how wide a backbone and how long to train."""

    name: str
    image_size: int
    n_unlabeled: int
    n_train: int
    n_test: int
    train: TrainConfig
    task_budget: dict = dataclasses.field(default_factory=dict)  # per-task budget overrides

    def train_config(self, task_name: str | None = None, *, seed: int = 0) -> TrainConfig:
        """The training configuration of ``task_name`` (baselines: None) with ``seed``."""
        budget = self.task_budget.get(task_name, self.train.budget_samples)
        return dataclasses.replace(self.train, budget_samples=budget, seed=seed)

    def dataset_kwargs(self) -> dict:
        return {"size": self.image_size, "n_unlabeled": self.n_unlabeled,
                "n_train": self.n_train, "n_test": self.n_test}


PROFILES = {
    "quick": Profile(
        name="quick", image_size=64, n_unlabeled=10_000, n_train=5_000, n_test=2_000,
        train=TrainConfig(budget_samples=16_000, batch_size=128, lr=0.1, width=24, depth=4),
    ),
    "full": Profile(
        name="full", image_size=64, n_unlabeled=50_000, n_train=10_000, n_test=5_000,
        train=TrainConfig(budget_samples=2_000_000, batch_size=256, lr=0.1, width=64, depth=4,
                          convs_per_block=2),
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` ("quick" or "full")."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None

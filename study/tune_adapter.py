"""The Ray Tune function trainable, a thin adapter over :func:`trainables.train.run`, and the views
that map each phase's Tune config to ``(strategy, trial config)``. Trial actors unpickle these, so
this module imports nothing heavier than the trial code itself.

A trial config is validated once, on the driver, where a view forms it (``validated``): what
travels to the trial, to MLflow's params and to the search summary is the validated config's dump
(preset applied, defaults filled).
"""
from __future__ import annotations

import copy

import ray
from ray import tune

from trainables.config import parse_config
from trainables.data import ImageArrays
from trainables.errors import ConfigError
from trainables.train import run


def tune_trainable(config: dict, data: ImageArrays | None = None, view=None) -> None:
    """Run one trial inside Tune: report each epoch with its checkpoint, resume from Tune's.
    ``view`` maps the phase's Tune config to ``(strategy, trial config)``."""
    if view is not None:
        config = view(config)[1]
    node = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report({**metrics, "node_id": node}, checkpoint=checkpoint)

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run(config, report, data=data)
    else:
        with checkpoint.as_directory() as folder:
            run(config, report, checkpoint_dir=folder, data=data)


def validated(config: dict) -> dict:
    """The validated trial config's dump (JSON types). A config that does not validate is returned
    as it is: its trial then fails with the message, and the study goes on."""
    try:
        return parse_config(config).model_dump(mode="json")
    except ConfigError:
        return config


class SearchView:
    """The search's Tune config ``{"strategy": name, "trial": trial config}``: the only code that
    writes (``wrap``) or reads (``__call__``, ``strategy``) it."""

    @staticmethod
    def wrap(strategy: str, trial: dict) -> dict:
        return {"strategy": strategy, "trial": validated(trial)}

    @staticmethod
    def strategy(config: dict) -> str:
        return config["strategy"]

    def __call__(self, config: dict) -> tuple[str, dict]:
        return config["strategy"], config["trial"]


def repeat_config(best: dict, seed: int, vary_split: bool, features: bool = False) -> dict:
    """The trial config of one repeat: the best searched config with the repeat's seed (and the
    split seed derived from it when the split varies too); ``features`` stores the test split's
    penultimate features with its predictions."""
    config = copy.deepcopy(best)
    config["seed"] = seed
    if vary_split:
        config["data"]["split_seed"] = seed
    if features:
        config.setdefault("evaluation", {})["features"] = True
    return config


class RepeatView:
    """Maps a repeat trial's Tune config ``{"run": {"strategy", "seed"}}`` to its trial config: the
    strategy's best searched config (validated once here) with the repeat's seed. The run of
    ``features_seed`` also stores its penultimate test features (the report's embedding plot)."""

    features_seed: int | None = None  # a view pickled before features were stored (an interrupted grid)

    def __init__(self, configs: dict[str, dict], vary_split: bool, features_seed: int | None = None) -> None:
        self.configs = {s: validated(c) for s, c in configs.items()}
        self.vary_split, self.features_seed = vary_split, features_seed

    @staticmethod
    def param_space(pairs: list[tuple[str, int]]) -> dict:
        """The Tune grid over (strategy, seed) pairs, one trial each."""
        return {"run": tune.grid_search([{"strategy": s, "seed": k} for s, k in pairs])}

    def __call__(self, config: dict) -> tuple[str, dict]:
        run = config["run"]
        return run["strategy"], repeat_config(self.configs[run["strategy"]], run["seed"], self.vary_split,
                                              features=run["seed"] == self.features_seed)

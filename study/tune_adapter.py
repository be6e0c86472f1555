"""The Ray Tune function trainable, a thin adapter over :func:`trainables.train.run`, and the views
that map each phase's Tune config to ``(strategy, trial config)``. Trial actors unpickle these, so
this module imports nothing heavier than the trial code itself.

A trial config is validated once, on the driver, where a view forms it (``validated``): what
travels to the trial, to MLflow's params and to the search summary is the validated config's dump
(preset applied, defaults filled).
"""
from __future__ import annotations

import copy
import time

import ray
from ray import tune

from trainables.config import parse_config
from trainables.data import ImageArrays
from trainables.errors import ConfigError
from trainables.train import run


def tune_trainable(config: dict, data: ImageArrays | None = None, view=None) -> None:
    """Run one trial inside Tune: report each epoch with its checkpoint (and ``reported_at``, the
    report's time in epoch seconds: MLflow's timestamp of the epoch's metrics), resume from Tune's.
    ``view`` maps the phase's Tune config to ``(strategy, trial config)``."""
    if view is not None:
        config = view(config)[1]
    node = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report({**metrics, "node_id": node, "reported_at": time.time()}, checkpoint=checkpoint)

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
    """Maps a repeat trial's Tune config ``{"run": {"strategy", "search_seed", "seed"}}`` to its
    trial config: the best config of the strategy's search with that search seed (validated once
    here) with the repeat's seed. The run of ``features_seed`` in the ``primary`` search (search.seed)
    also stores its penultimate test features (the report's embedding plot)."""

    features_seed: int | None = None  # a view pickled before features were stored (an interrupted grid)

    def __init__(self, configs: dict[tuple[str, int], dict], vary_split: bool, features_seed: int | None = None,
                 primary: int | None = None) -> None:
        self.configs = {key: validated(c) for key, c in configs.items()}
        self.vary_split, self.features_seed, self.primary = vary_split, features_seed, primary
        self.several = len({k for _, k in configs}) > 1

    def __setstate__(self, state: dict) -> None:
        """A view pickled before search seeds (an interrupted grid) keyed its configs by strategy:
        they are its one search's, and its runs name no search seed."""
        configs = state.get("configs", {})
        if configs and all(isinstance(key, str) for key in configs):
            state = {**state, "configs": {(s, None): c for s, c in configs.items()}, "primary": None,
                     "several": False}
        self.__dict__.update(state)

    @staticmethod
    def param_space(pairs: list[tuple[str, int, int]]) -> dict:
        """The Tune grid over (strategy, search seed, seed) triples, one trial each."""
        return {"run": tune.grid_search([{"strategy": s, "search_seed": k, "seed": seed} for s, k, seed in pairs])}

    def _key(self, run: dict) -> tuple[str, int | None]:
        return run["strategy"], run.get("search_seed", self.primary)

    def __call__(self, config: dict) -> tuple[str, dict]:
        run = config["run"]
        strategy, search_seed = self._key(run)
        return strategy, repeat_config(self.configs[(strategy, search_seed)], run["seed"], self.vary_split,
                                       features=run["seed"] == self.features_seed and search_seed == self.primary)

    def run_tags(self, config: dict) -> dict[str, str]:
        """The repeat run's MLflow tags beyond the logger's: the search seed its config came from."""
        search_seed = self._key(config["run"])[1]
        return {} if search_seed is None else {"search_seed": str(search_seed)}

    def run_name(self, config: dict) -> str:
        strategy, search_seed = self._key(config["run"])
        seed = config["run"]["seed"]
        return f"{strategy}-search{search_seed}-seed{seed}" if self.several else f"{strategy}-seed{seed}"

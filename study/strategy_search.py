"""Every strategy's search in one Tune experiment, each strategy still searched on its own.

Each strategy keeps its own Optuna study (seeded TPE or NSGA-II), its own sample budget and
concurrency cap, and its own ASHA brackets: a strategy's trials are suggested from, and compared
with, its own trials only, as with one Tuner per strategy. Sharing one experiment means one Ray
start, warm actors reused across strategies, no drained tail between strategies, and on a cluster
every strategy's trials run at the same time.

A Tune config of the search is written and read by :class:`study.tune_adapter.SearchView` only.
"""
from __future__ import annotations

import copy
import pickle
from collections import Counter
from collections.abc import Callable

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from .spec import Distribution, SearchConfig, set_dotted
from .tune_adapter import SearchView


def optuna_distribution(dist: Distribution) -> optuna.distributions.BaseDistribution:
    """A spec distribution as Optuna's (``int`` bounds inclusive, as in the spec)."""
    low_high = dist.args
    return {
        "loguniform": lambda: optuna.distributions.FloatDistribution(*low_high, log=True),
        "uniform": lambda: optuna.distributions.FloatDistribution(*low_high),
        "int": lambda: optuna.distributions.IntDistribution(*low_high),
        "choice": lambda: optuna.distributions.CategoricalDistribution(list(low_high)),
    }[dist.kind]()


def optuna_sampler(search: SearchConfig) -> optuna.samplers.BaseSampler:
    """A new seeded sampler of the spec's kind (one per strategy), with ``startup_trials`` as TPE's
    random startup trials or NSGA-II's population."""
    if search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=search.seed, population_size=search.startup)
    return optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=search.startup)


class ResultNotStored(RuntimeError):
    """Optuna's storage did not take a finished trial's result: its sampler would never learn it."""


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose persisted study may be ahead of Tune's last experiment snapshot (after a
    hard kill): a result for a trial the storage already holds as finished is ignored. A finished
    trial whose result the storage did not take (Ray's OptunaSearch only logs that) is an error."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        super().on_trial_complete(trial_id, result=result, error=error)
        if ot_trial is None:
            return
        try:
            trials = self._ot_study.get_trials(deepcopy=False)
            why = "its storage is locked or unreachable"
        except Exception as exc:  # noqa: BLE001 - any storage failure means the result is not there
            trials, why = [], f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        stored = next((t for t in trials if t.number == ot_trial.number), None)
        if stored is None or not stored.state.is_finished():
            raise ResultNotStored(f"Optuna study {self._ot_study.study_name!r} did not store the result of "
                                  f"trial {trial_id} ({why}); the search stops here: continue it with --resume")


class StrategySearch(Searcher):
    """Round-robin over one searcher per strategy: each gets ``budget`` trials and at most
    ``max_concurrent`` live ones; its suggestions are set (dotted keys) into its base config.
    Results go back to the searcher of the trial's strategy."""

    def __init__(self, searchers: dict[str, Searcher], bases: dict[str, dict], budget: int,
                 max_concurrent: int | None, metric: str | list[str], mode: str | list[str]) -> None:
        super().__init__(metric=metric, mode=mode)
        self._searchers, self._bases = searchers, bases
        self._budget, self._max_concurrent = budget, max_concurrent
        self._suggested = dict.fromkeys(searchers, 0)
        self._live: dict[str, str] = {}  # trial id -> strategy, until the trial completes
        self._turn = 0

    def suggest(self, trial_id: str) -> dict | str | None:
        order = list(self._searchers)
        if all(self._suggested[s] >= self._budget for s in order):
            return Searcher.FINISHED
        for i in range(len(order)):
            strategy = order[(self._turn + i) % len(order)]
            live = sum(s == strategy for s in self._live.values())
            if self._suggested[strategy] >= self._budget or (
                    self._max_concurrent is not None and live >= self._max_concurrent):
                continue
            values = self._searchers[strategy].suggest(trial_id)
            if values is None or values == Searcher.FINISHED:
                continue
            self._turn = (self._turn + i + 1) % len(order)
            self._suggested[strategy] += 1
            self._live[trial_id] = strategy
            trial = copy.deepcopy(self._bases[strategy])
            for key, value in values.items():
                set_dotted(trial, key, value)
            return SearchView.wrap(strategy, trial)
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._live:
            self._searchers[self._live[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        strategy = self._live.pop(trial_id, None)
        if strategy is not None:
            self._searchers[strategy].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class StrategyScheduler(FIFOScheduler):
    """One scheduler per strategy (e.g. ASHA): a trial's results go to its strategy's scheduler,
    so rungs compare a strategy's trials with each other only. The next trial to start is the
    waiting one of the strategy that has started the fewest trials (oldest first among those): the
    strategies, with equal budgets, then finish together instead of the last one's trials running
    one after another on an otherwise idle cluster."""

    def __init__(self, make: Callable[[], TrialScheduler], strategies: list[str], metric: str,
                 mode: str) -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self._schedulers = {s: make() for s in strategies}
        first = next(iter(self._schedulers.values()))
        self._supports_buffered_results = first.supports_buffered_results

    def _of(self, trial) -> TrialScheduler:
        return self._schedulers[SearchView.strategy(trial.config)]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        trials = tune_controller.get_trials()
        started = Counter(SearchView.strategy(t.config) for t in trials if t.status != Trial.PENDING)
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [t for t in trials if t.status == status]
            if waiting:
                return min(waiting, key=lambda t: started[SearchView.strategy(t.config)])
        return None

    def debug_string(self) -> str:
        return "\n".join(f"{s}: {sched.debug_string()}" for s, sched in self._schedulers.items())


"""One Tune experiment for every strategy, each searched on its own: budgets, concurrency caps,
routing of results, independence of the strategies' suggestions, save/restore (real Optuna, real
ASHA; no Ray needed)."""
import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from study.spec import Distribution, SearchConfig
from study.strategy_search import (
    ResumableOptunaSearch,
    StrategyScheduler,
    StrategySearch,
    optuna_distribution,
    optuna_sampler,
)

SPACE = {"lr": Distribution(loguniform=[1e-4, 1e-1]), "vabal.exponent": Distribution(uniform=[0.5, 2.0]),
         "batch_size": Distribution(choice=[32, 64]), "layers": Distribution(int=[1, 3])}


def make_search(strategies=("a", "b", "c"), budget=4, max_concurrent=None, seed=0):
    searchers = {s: ResumableOptunaSearch(space={k: optuna_distribution(d) for k, d in SPACE.items()},
                                          metric="score", mode="max",
                                          sampler=optuna.samplers.TPESampler(seed=seed))
                 for s in strategies}
    bases = {s: {"strategy_knob": s, "vabal": {"exponent": 1.0, "use_for": "loss"}, "lr": 1.0}
             for s in strategies}
    return StrategySearch(searchers, bases, budget, max_concurrent, "score", "max"), bases


def drain(search, n, complete=True):
    """Ask for ``n`` trials; complete each right away (score = lr) unless told not to."""
    out = []
    for i in range(n):
        tid = f"t{i}-{id(search)}"
        config = search.suggest(tid)
        out.append((tid, config))
        if complete and isinstance(config, dict):
            search.on_trial_complete(tid, {"score": config["trial"]["lr"]})
    return out


def test_every_strategy_gets_the_same_budget_round_robin_then_finished():
    search, bases = make_search(budget=4)
    configs = [c for _, c in drain(search, 12)]
    assert [c["strategy"] for c in configs] == ["a", "b", "c"] * 4
    assert search.suggest("extra") == Searcher.FINISHED
    for c in configs:
        trial = c["trial"]
        assert trial["strategy_knob"] == c["strategy"]  # the strategy's own base config
        assert 1e-4 <= trial["lr"] <= 1e-1 and trial["batch_size"] in (32, 64) and 1 <= trial["layers"] <= 3
        assert 0.5 <= trial["vabal"]["exponent"] <= 2.0 and trial["vabal"]["use_for"] == "loss"
    assert bases["a"]["lr"] == 1.0 and bases["a"]["vabal"]["exponent"] == 1.0  # bases untouched


def test_a_strategy_at_its_concurrency_cap_is_skipped_until_a_trial_completes():
    search, _ = make_search(strategies=("a", "b"), budget=3, max_concurrent=1)
    live = drain(search, 3, complete=False)
    assert [c["strategy"] for _, c in live[:2]] == ["a", "b"] and live[2][1] is None
    search.on_trial_complete(live[1][0], {"score": 0.5})  # b's trial ends: only b may go on
    assert search.suggest("next")["strategy"] == "b"
    assert search.suggest("blocked") is None


def test_results_reach_the_optuna_study_of_the_trials_strategy():
    search, _ = make_search(strategies=("a", "b"), budget=2)
    drain(search, 4)
    for s in ("a", "b"):
        study = search._searchers[s]._ot_study
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert all(t.value == t.params["lr"] for t in study.trials)


def test_a_strategys_suggestions_do_not_depend_on_the_other_strategies():
    """Fairness: strategy a samples the same configs whether or not others share the experiment."""
    alone, _ = make_search(strategies=("a",), budget=12)
    shared, _ = make_search(strategies=("a", "b", "c"), budget=12)
    mine = [c["trial"] for _, c in drain(alone, 12)]
    theirs = [c["trial"] for _, c in drain(shared, 36) if c["strategy"] == "a"]
    assert mine == theirs  # includes TPE's model-based suggestions after its 10 random ones


def test_save_and_restore_continue_the_budget_and_the_live_trials(tmp_path):
    search, _ = make_search(strategies=("a", "b"), budget=3, max_concurrent=2)
    done = drain(search, 3)
    live = drain(search, 1, complete=False)
    search.save(str(tmp_path / "state.pkl"))
    restored, _ = make_search(strategies=("a", "b"), budget=3, max_concurrent=2)
    restored.restore(str(tmp_path / "state.pkl"))
    restored.on_trial_complete(live[0][0], {"score": 0.1})
    rest = [c for _, c in drain(restored, 2)]
    assert sorted(c["strategy"] for _, c in done + live) + sorted(c["strategy"] for c in rest) == \
        ["a", "a", "b", "b"] + ["a", "b"]
    assert restored.suggest("over") == Searcher.FINISHED
    counts = {s: len(restored._searchers[s]._ot_study.trials) for s in ("a", "b")}
    assert counts == {"a": 3, "b": 3}


def _trial(strategy: str, i: int) -> Trial:
    return Trial("trainable", config={"strategy": strategy, "trial": {}}, trial_id=f"{strategy}{i}", stub=True)


@pytest.mark.parametrize("grace", [1, 2])
def test_asha_rungs_compare_a_strategys_trials_with_each_other_only(grace):
    """Strategy b scores far below a: one shared ASHA stops b's trials for a's sake; per strategy,
    each strategy's decisions are those of an ASHA that saw its trials alone."""
    def asha():
        return ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=grace, reduction_factor=3)

    def decide(sched, trials):
        for t in trials:
            sched.on_trial_add(None, t)
        out = {}
        for t in trials:
            score = (0.9 if t.config["strategy"] == "a" else 0.1) + 0.01 * int(t.trial_id[1:])
            out[t.trial_id] = sched.on_trial_result(None, t, {"training_iteration": grace, "score": score})
        return out

    trials = [_trial(s, i) for i in range(4) for s in ("a", "b")]
    per_strategy = decide(StrategyScheduler(asha, ["a", "b"], "score", "max"), trials)
    shared = decide(asha(), trials)
    for s in ("a", "b"):
        mine = [t for t in trials if t.config["strategy"] == s]
        alone = decide(asha(), [_trial(s, int(t.trial_id[1:])) for t in mine])
        assert {tid: d for tid, d in per_strategy.items() if tid.startswith(s)} == alone
    b = [t.trial_id for t in trials if t.trial_id.startswith("b")]
    continued = sum(per_strategy[tid] == TrialScheduler.CONTINUE for tid in b)
    assert continued >= 1 and sum(shared[tid] == TrialScheduler.CONTINUE for tid in b) < continued


class _Trials:
    """The one part of Tune's controller a scheduler's ``choose_trial_to_run`` reads."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials = trials

    def get_trials(self) -> list[Trial]:
        return self.trials


def test_the_next_trial_to_start_is_of_the_strategy_furthest_behind():
    """Tune's FIFO order would start a's pending trial first; a and c have started two trials, b
    one, so b's starts first; between a and c, the older pending trial."""
    sched = StrategyScheduler(FIFOScheduler, ["a", "b", "c"], "score", "max")
    trials = [_trial("a", 0), _trial("b", 0), _trial("c", 0), _trial("a", 1), _trial("c", 1),
              _trial("a", 2), _trial("c", 2), _trial("b", 1)]
    for t, status in zip(trials, [Trial.TERMINATED] * 3 + [Trial.RUNNING] * 2 + [Trial.PENDING] * 3):
        t.set_status(status)
    controller = _Trials(trials)
    assert sched.choose_trial_to_run(controller).trial_id == "b1"
    trials[-1].set_status(Trial.RUNNING)
    assert sched.choose_trial_to_run(controller).trial_id == "a2"
    for t in trials[5:7]:
        t.set_status(Trial.RUNNING)
    assert sched.choose_trial_to_run(controller) is None
    trials[2].set_status(Trial.PAUSED)
    assert sched.choose_trial_to_run(controller) is trials[2]


def _suggested_x(search: SearchConfig, n: int) -> list[float]:
    study = optuna.create_study(sampler=optuna_sampler(search), direction="maximize")
    study.optimize(lambda t: -(t.suggest_float("x", 0.0, 1.0) - 0.9) ** 2, n_trials=n)
    return [t.params["x"] for t in study.trials]


def test_startup_trials_are_the_random_draws_before_tpe_uses_its_model():
    default = _suggested_x(SearchConfig(seed=3), 4)  # Optuna's 10 random startup trials
    early = _suggested_x(SearchConfig(seed=3, startup_trials=2), 4)
    assert early[:2] == default[:2]  # the same seeded random draws
    assert early[2:] != default[2:]  # then TPE's model instead of more random draws
    assert _suggested_x(SearchConfig(seed=3, startup_trials=2), 4) == early  # seeded
    assert optuna_sampler(SearchConfig(sampler="nsga2", startup_trials=4))._population_size == 4


@pytest.mark.parametrize("settings, note", [
    ({"samples_per_strategy": 6}, "TPE sampler's 10 random startup trials"),
    ({"samples_per_strategy": 6, "startup_trials": 3}, None),
    ({"samples_per_strategy": 11}, None),
    ({"samples_per_strategy": 24, "sampler": "nsga2"}, "NSGA2 sampler's 50 random startup trials"),
])
def test_a_budget_within_the_random_startup_trials_is_noted(settings, note):
    got = SearchConfig(**settings).random_search_note()
    assert got is None if note is None else note in got


def _locked(path, seconds, ready):
    """Hold an exclusive write lock on a SQLite file for ``seconds`` (as optuna-dashboard may)."""
    import sqlite3
    import time

    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    ready.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.parametrize("busy_s, stored", [(30.0, True), (0.5, False)])
def test_a_result_waits_for_a_locked_optuna_database_or_fails_loudly(tmp_path, busy_s, stored):
    import threading

    from study.strategy_search import ResultNotStored

    db = tmp_path / "optuna.db"
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}", engine_kwargs={"connect_args": {"timeout": busy_s}})
    search = ResumableOptunaSearch(space={"lr": optuna_distribution(SPACE["lr"])}, metric="score", mode="max",
                                   sampler=optuna.samplers.TPESampler(seed=0), storage=storage, study_name="s")
    search.suggest("t1")
    ready = threading.Event()
    holder = threading.Thread(target=_locked, args=(db, 3.0, ready))
    holder.start()
    ready.wait()
    try:
        if stored:
            search.on_trial_complete("t1", {"score": 0.7})
            assert [t.value for t in optuna.load_study(study_name="s", storage=storage).trials] == [0.7]
        else:
            with pytest.raises(ResultNotStored, match="did not store the result of trial t1"):
                search.on_trial_complete("t1", {"score": 0.7})
    finally:
        holder.join()

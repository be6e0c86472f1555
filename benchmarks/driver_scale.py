"""How many concurrent trials one driver keeps up with: results/s, the lag from a trial's report to
its MLflow row, the driver's CPU and memory, by simulation on this machine.

A real Ray cluster on loopback (a head and one more node per step, as a cluster grows) offers
logical ``slot`` resources far above the real cores; each trial takes one slot. The trainable
imports nothing heavy: it sleeps 1 s per "epoch" and reports a metric dict of a real search epoch's
size and keys (``trainables.metrics.classification_metrics`` of three classes: val metrics,
per-class recalls, the confusion matrix, their ``best/`` copies, train metrics). Side by side, in
one run, on the same cluster:

- **bare**: Ray Tune alone: the same trainable, ``BasicVariantGenerator``, no callbacks but Tune's
  JSON logger (as ours: ``study.runtime.RAY_ENV`` turns Tune's CSV and TensorBoard loggers off);
- **sqlite**: our search (``study.search.search_tuner``: the spec, ``StrategySearch`` with one Optuna
  study per strategy, ASHA per strategy, our MLflow logger and progress) with MLflow and Optuna on
  SQLite files; at the top step a second window flushes the logger after every result, which is how
  the driver wrote before the background writer (``sync`` rows: the before/after);
- **server**: our search with a real ``mlflow server`` backed by PostgreSQL (Debian's, started here
  on loopback) and Optuna on the same PostgreSQL (``search.storage``).

In each step (``--levels``, concurrent trials) the results the driver processes are counted over a
``--window`` once every trial of the step runs; ASHA judges every result but its first rung lies
past the simulation, so no trial stops and the concurrency holds. At the end every epoch the driver
took must be in MLflow exactly once (rows counted in the tracking database). Before each step the
free memory is checked against what a trial actor took in the step before; the ladder stops with a
note where the next step would not fit. Also measured: the progress display's cost per result with
200 trials, what one Optuna intermediate report costs on each storage (plain, and with the
engine options ``study.layout.optuna_engine_kwargs`` gives), and the background writer with the
machine to itself (``writer_alone``: no Ray, the top step's trials reporting one epoch a second to
SQLite and to the server; its lag, then the most epochs/s it writes), which tells the writer's own
limit apart from the simulation's (whose Ray trial processes alone keep 2 cores busy).

Usage: python benchmarks/driver_scale.py [--levels 32 64] [--window 10] [--spec PATH]
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import ray
import sqlalchemy
from _services import LoopbackCluster, mlflow_server, postgres
from mlflow import MlflowClient
from optuna.storages import RDBStorage
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import JsonLoggerCallback

from study.layout import optuna_engine_kwargs
from study.mlflow_writer import SERVER_CALLS, EpochResult, MLflowWriter, RunEnd, RunStart
from study.progress import Progress
from study.runtime import RAY_ENV
from study.search import VIEW, search_callbacks, search_tuner
from study.spec import StudySpec, load_spec
from study.tracking import MLflowTrialLogger, StudyTracker, numeric_metrics
from study.tune_adapter import SearchView
from trainables.metrics import classification_metrics

SLOT = "slot"
RESERVE_MB = 2500  # memory left free for the servers, the driver and the OS


def epoch_result(seed: int = 0) -> dict:
    """A search epoch's reported dict, as :func:`trainables.train.run` builds it (3 classes)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 400)
    probs = rng.dirichlet(np.ones(3), 400)
    val = {f"val/{k}": v for k, v in classification_metrics(y, probs, 0.7, ["covid", "normal", "pneumonia"],
                                                             positive=0).items()}
    train = {"train/loss": 0.6, "train/accuracy": 0.7, "train/lr": 1e-3, "train/epoch_seconds": 1.0}
    return {**train, **val, **{f"best/{k}": v for k, v in val.items()}, "best/epoch": 1}


def sleeper(config: dict, result: dict, stop: str) -> None:
    """The simulated trial: 1 s per epoch, then a report, until the ``stop`` file appears. Pickled by
    value (this script is ``__main__``): its actors import Ray Tune and nothing else."""
    import os
    import time

    from ray import tune as t

    epoch = 0
    while not os.path.exists(stop):
        time.sleep(1.0)
        epoch += 1
        t.report({**result, "epoch": epoch, "reported_at": time.time()})


class Meter(tune.Callback):
    """Counts the results the driver processes (when) and the trials running."""

    def __init__(self) -> None:
        self.received: list[float] = []
        self.running = 0

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.received.append(time.time())

    def on_step_end(self, iteration, trials, **info) -> None:
        self.running = sum(t.status == Trial.RUNNING for t in trials)


class FlushEach(tune.Callback):
    """While ``on``, the logger writes each result before the driver goes on (the old, synchronous way)."""

    def __init__(self, logger: MLflowTrialLogger) -> None:
        self.logger, self.on = logger, False

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self.on:
            self.logger.flush()


def slots_flags(slots: int) -> tuple[str, ...]:
    """``ray start`` flags of a node that offers ``slots`` trial slots. Its 2 logical CPUs, which no
    trial asks for, let its raylet start 2 worker processes at a time (it starts one with none)."""
    return "--num-cpus=2", f"--resources={json.dumps({SLOT: slots})}"


def available_mb() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(text.split("MemAvailable:")[1].split()[0]) // 1024


def rss_mb() -> float:
    text = Path("/proc/self/status").read_text()
    return int(text.split("VmRSS:")[1].split()[0]) / 1024


def spec_for(args, root: Path, tracking: str, storage: str | None, top: int) -> StudySpec:
    """The spec at ``--spec`` with its budget sized to ``top`` concurrent trials, run by this script."""
    spec = load_spec(args.spec)
    per_strategy = math.ceil(top / len(spec.strategies))
    return load_spec(args.spec, {
        "data": {"source": "synthetic", "path": None},
        "tracking": {"uri": tracking}, "storage_path": str(root / "results"),
        "search": {"samples_per_strategy": per_strategy, "max_concurrent": per_strategy, "storage": storage},
        "training": {"epochs": 100_000}, "scheduler": {"grace_period": 50_000}})


def run_kind(kind: str, args, root: Path, levels: list[int], result: dict, uris: dict | None,
             notes: list[str]) -> tuple[list[dict], dict]:
    """One configuration through the ladder: its rows (one per step and window) and its totals."""
    stop = root / f"stop-{kind}"
    cluster = LoopbackCluster()
    rows: list[dict] = []
    cluster.start_head(resources=slots_flags(levels[0]))
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    meter, flusher, logger = Meter(), None, None
    trainable = tune.with_resources(tune.with_parameters(sleeper, result=result, stop=str(stop)),
                                    tune.PlacementGroupFactory([{"CPU": 0, SLOT: 1}]))
    top = levels[-1]
    if kind == "bare":
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=top, max_concurrent_trials=top,
                                                                  reuse_actors=True),
                           run_config=tune.RunConfig(name=kind, storage_path=str(root / kind), verbose=0,
                                                     callbacks=[meter, JsonLoggerCallback()]))
    else:
        spec = spec_for(args, root / kind, uris["tracking"], uris.get("optuna"), top)
        tracker = StudyTracker.of(spec)
        parents = {s: tracker.parent_run(s, "search") for s in spec.strategies}
        per_strategy = spec.search.samples_per_strategy
        logger, progress = search_callbacks(spec, parents, tracker, per_strategy, "search")
        flusher = FlushEach(logger)
        tuner = search_tuner(spec, trainable, parents, tracker, f"{root / kind}/search", per_strategy, "search",
                             callbacks=[logger, progress, flusher, meter])
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            tuner.fit()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=fit, name=f"fit-{kind}")
    thread.start()
    per_actor_mb, before_mb, slots = 200.0, available_mb(), levels[0]

    def short(level: int) -> str | None:
        """Why the step to ``level`` trials would not fit in memory, or None if it would."""
        need = (level - slots) * per_actor_mb
        if available_mb() - need < RESERVE_MB:
            return (f"{kind}: stopped before {level} trials: {level - slots} more trial actors need about "
                    f"{need:.0f} MB ({per_actor_mb:.0f} MB each), {available_mb()} MB free")
        return None

    try:
        for i, level in enumerate(levels):
            if level > slots:
                cluster.add_node(resources=slots_flags(level - slots))
                slots = level
            ramp = time.time()
            while meter.running < level and not failure:
                time.sleep(0.5)
                if time.time() - ramp > 600:
                    raise RuntimeError(f"{kind}: only {meter.running} of {level} trials started in 600 s")
            ramp_s = time.time() - ramp
            per_actor_mb = max(per_actor_mb if i == 0 else 0, (before_mb - available_mb()) / level)
            time.sleep(3)  # the last trials' first reports
            rows.append(window(kind, level, meter, logger, args.window) | {"ramp_s": ramp_s})
            note = short(levels[i + 1]) if i + 1 < len(levels) else None
            last = i + 1 == len(levels) or note is not None
            if flusher and last:  # the before/after of the background writer, at the top step
                flusher.on = True
                time.sleep(2)
                rows.append(window(kind + " sync", level, meter, logger, args.window) | {"ramp_s": ramp_s})
                flusher.on = False
            if note:
                notes.append(note)
            if last:
                break
    finally:
        stop.touch()
        ending = time.time()
        thread.join()
        ray.shutdown()
        cluster.stop()
        print(f"{kind}: {time.time() - ending:.0f} s to end the trials and stop the cluster", file=sys.stderr)
    if failure:
        raise failure[0]
    totals = {"received": len(meter.received), "per_actor_mb": per_actor_mb}
    if kind != "bare":
        totals |= count_rows(uris["tracking_db"])
    return rows, totals


def lag_quantiles(lags: list[float]) -> dict:
    """Median and p99 of sorted lags (seconds)."""
    return {"lag_p50_s": lags[len(lags) // 2], "lag_p99_s": lags[min(len(lags) - 1, int(0.99 * len(lags)))]}


def window(kind: str, level: int, meter: Meter, logger: MLflowTrialLogger | None, seconds: float) -> dict:
    start, cpu = time.time(), time.process_time()
    time.sleep(seconds)
    end = time.time()
    results = sum(start <= t < end for t in meter.received)
    lags = sorted(logger.writer.lags(since=start)) if logger is not None and logger.writer else []
    row = {"kind": kind, "level": level, "results_per_s": results / (end - start),
           "driver_cpu": (time.process_time() - cpu) / (end - start), "rss_mb": rss_mb()}
    if lags:
        row |= lag_quantiles(lags)
    return row


def count_rows(db_url: str) -> dict:
    """Epoch rows in the tracking database: all of them and distinct (run, step) pairs."""
    engine = sqlalchemy.create_engine(db_url)
    with engine.connect() as con:
        rows, distinct = con.execute(sqlalchemy.text(
            "SELECT count(*), count(DISTINCT run_uuid || '/' || step) FROM metrics WHERE key = 'epoch'")).one()
    engine.dispose()
    return {"rows": rows, "distinct": distinct}


def writer_alone(uri: str, result: dict, trials: int, seconds: int, backlog: int = 10, artifacts: str | None = None,
                 server_calls: int = SERVER_CALLS) -> dict:
    """The background writer with the machine to itself (no Ray, no trial processes): ``trials``
    runs each reporting one epoch a second for ``seconds``, evenly spread (the lag from report to row:
    median and p99, after the first 3 s); then ``backlog`` epochs of each run queued at once, timed
    until written (the most epochs/s it writes when it is behind). ``artifacts``: the experiment's
    artifact folder (a tracking server keeps its own)."""
    experiment = MlflowClient(uri).create_experiment(f"writer-alone-{time.time_ns()}", artifact_location=artifacts)
    writer = MLflowWriter(uri, experiment, server_calls=server_calls)
    metrics = numeric_metrics(result)
    matrices = {k: v for k, v in result.items() if isinstance(v, list)}
    ids = [f"w{i}" for i in range(trials)]
    for i in ids:
        writer.put(RunStart(i, f"tags.trial_id = '{i}'", i, {"trial_id": i}, {}))
    writer.flush()
    start = time.time()
    for second in range(seconds):
        for n, i in enumerate(ids):
            time.sleep(max(0.0, start + second + n / trials - time.time()))
            writer.put(EpochResult(i, second + 1, metrics, {}, matrices, time.time()))
    writer.flush()
    lags = sorted(writer.lags(since=start + 3))
    begun = time.time()
    for epoch in range(seconds + 1, seconds + 1 + backlog):
        for i in ids:
            writer.put(EpochResult(i, epoch, metrics, {}, matrices, time.time()))
    writer.flush()
    most = trials * backlog / (time.time() - begun)
    for i in ids:
        writer.put(RunEnd(i, seconds + backlog))
    writer.close()
    return lag_quantiles(lags) | {"max_epochs_per_s": most}


def progress_cost(trials: int = 200, calls: int = 2000) -> float:
    """Microseconds the progress display takes per result with ``trials`` trials in the experiment."""
    strategies = [f"s{i}" for i in range(8)]
    live = [Trial("trainable", config=SearchView.wrap(strategies[i % 8], {"seed": i}), trial_id=f"t{i}", stub=True)
            for i in range(trials)]
    for t in live[: trials // 2]:
        t.status = Trial.RUNNING
    progress = Progress(VIEW, dict.fromkeys(strategies, trials // 8), "val/balanced_accuracy", 40)
    progress.setup()
    start = time.perf_counter()
    for i in range(calls):
        progress.on_trial_result(i, live, live[i % trials], {"val/balanced_accuracy": 0.5})
    return (time.perf_counter() - start) / calls * 1e6


def optuna_report_ms(storage: str | optuna.storages.BaseStorage, reports: int = 200) -> float:
    """Median milliseconds of one Optuna intermediate report (what OptunaSearch does per result)."""
    study = optuna.create_study(storage=storage, study_name=f"bench-{time.time_ns()}")
    trial = study.ask()
    times = []
    for step in range(reports):
        start = time.perf_counter()
        trial.report(0.5, step)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", type=int, nargs="+", default=[32, 64], help="concurrent trials, in steps")
    ap.add_argument("--window", type=float, default=10.0, help="seconds counted in each step")
    ap.add_argument("--spec", default="search_spaces/thesis_resnet18.yaml")
    ap.add_argument("--kinds", nargs="+", default=["bare", "sqlite", "server"], help="which drivers to run")
    args = ap.parse_args()
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    began = time.time()
    root = Path(tempfile.mkdtemp(prefix="driver-scale-"))
    result = epoch_result()
    notes: list[str] = []
    print(f"a reported epoch: {sum(isinstance(v, float | int) for v in result.values())} numbers, "
          f"{sum(isinstance(v, list) for v in result.values())} matrices, {len(json.dumps(result))} bytes JSON",
          file=sys.stderr)
    rows, totals = [], {}
    with postgres("mlflow", "optuna") as pg, mlflow_server(f"{pg}/mlflow") as (server_url, _):
        sqlite_db = root / "sqlite" / "mlflow.db"
        sqlite_db.parent.mkdir(parents=True)
        configs = {"bare": None,
                   "sqlite": {"tracking": f"sqlite:///{sqlite_db}", "tracking_db": f"sqlite:///{sqlite_db}"},
                   "server": {"tracking": server_url, "optuna": f"{pg}/optuna", "tracking_db": f"{pg}/mlflow"}}
        for kind, uris in configs.items():
            if kind not in args.kinds:
                continue
            print(f"{kind}: {args.levels} concurrent trials ...", file=sys.stderr, flush=True)
            kind_rows, totals[kind] = run_kind(kind, args, root, args.levels, result, uris, notes)
            rows += kind_rows
        top = max(r["level"] for r in rows)
        alone = {kind: writer_alone(uri, result, top, round(args.window) + 5, artifacts=folder)
                 for kind, uri, folder in (("sqlite", f"sqlite:///{root}/writer-alone.db", str(root / "alone")),
                                           ("server", server_url, None))
                 if kind in args.kinds}
        sqlite_url = f"sqlite:///{root}/optuna-bench.db"
        micro = {"progress_us_per_result_200_trials": progress_cost(),
                 "optuna_report_ms": {
                     "sqlite_plain": optuna_report_ms(sqlite_url),
                     "sqlite_ours": optuna_report_ms(RDBStorage(sqlite_url, engine_kwargs=optuna_engine_kwargs(
                         sqlite_url))),
                     "postgresql_plain": optuna_report_ms(f"{pg}/optuna"),
                     "postgresql_ours": optuna_report_ms(RDBStorage(f"{pg}/optuna", engine_kwargs=optuna_engine_kwargs(
                         f"{pg}/optuna"))),
                     "journal": optuna_report_ms(optuna.storages.JournalStorage(
                         optuna.storages.journal.JournalFileBackend(str(root / "journal.log"))))}}

    print(f"\n{'driver':12s} {'trials':>6s} {'results/s':>9s} {'of':>4s} {'lag p50':>7s} {'lag p99':>7s} "
          f"{'CPU':>5s} {'RSS MB':>6s} {'ramp s':>6s}")
    for r in rows:
        lag = (f"{r['lag_p50_s']:7.2f} {r['lag_p99_s']:7.2f}" if "lag_p99_s" in r else f"{'-':>7s} {'-':>7s}")
        print(f"{r['kind']:12s} {r['level']:6d} {r['results_per_s']:9.1f} {r['level']:4d} {lag} "
              f"{r['driver_cpu']:5.2f} {r['rss_mb']:6.0f} {r['ramp_s']:6.0f}")
    lost = sum(t["received"] - t["distinct"] for k, t in totals.items() if k != "bare")
    duplicated = sum(t["rows"] - t["distinct"] for k, t in totals.items() if k != "bare")
    for kind, t in totals.items():
        extra = f", {t['rows']} epoch rows in MLflow ({t['distinct']} distinct)" if "rows" in t else ""
        print(f"{kind}: the driver took {t['received']} results{extra}; a trial actor took about "
              f"{t['per_actor_mb']:.0f} MB", file=sys.stderr)
    print(f"progress display: {micro['progress_us_per_result_200_trials']:.0f} us per result with 200 trials; "
          "Optuna intermediate report: " + ", ".join(f"{k} {v:.2f} ms" for k, v in micro["optuna_report_ms"].items()),
          file=sys.stderr)
    for kind, a in alone.items():
        print(f"writer alone ({kind}): {top} runs, 1 epoch/s each: lag p50 {a['lag_p50_s']:.2f} s, p99 "
              f"{a['lag_p99_s']:.2f} s; at most {a['max_epochs_per_s']:.0f} epochs/s", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    def at(kind: str, key: str = "results_per_s") -> float | None:
        level = max(r["level"] for r in rows if r["kind"] == "bare")
        found = [r[key] for r in rows if r["kind"] == kind and r["level"] == level and key in r]
        return round(found[0], 2) if found else None

    bare, server = at("bare"), at("server")
    print(json.dumps({
        "level": max(r["level"] for r in rows if r["kind"] == "bare"),
        "results_per_s_bare": bare, "results_per_s_ours_sqlite": at("sqlite"),
        "results_per_s_ours_sqlite_sync": at("sqlite sync"), "results_per_s_ours_server": server,
        "results_per_s_ours_server_sync": at("server sync"),
        "server_over_bare": round(server / bare, 3) if bare and server else None,
        "p99_lag_s": at("server", "lag_p99_s"), "p99_lag_s_sqlite": at("sqlite", "lag_p99_s"),
        "lost_results": lost, "duplicated_results": duplicated,
        "writer_alone": {k: {m: round(v, 2) for m, v in a.items()} for k, a in alone.items()},
        "progress_us_per_result_200_trials": round(micro["progress_us_per_result_200_trials"], 1),
        "optuna_report_ms": {k: round(v, 2) for k, v in micro["optuna_report_ms"].items()},
        "levels": args.levels, "window_s": args.window, "wall_s": round(time.time() - began)}))


if __name__ == "__main__":
    main()

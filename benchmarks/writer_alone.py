"""The background MLflow writer with the machine to itself: how far behind it falls, and how many
epochs a second it writes, on SQLite and on a real ``mlflow server`` (PostgreSQL, Debian's, started
here on loopback), one call at a time against ``study.mlflow_writer.SERVER_CALLS`` at a time.

No Ray and no trial processes: ``--trials`` runs each report one epoch a second (the size of a real
search epoch, as in ``benchmarks/driver_scale.py``) for ``--seconds``; the lag is from the report to
its row in MLflow (median and p99, after the first 3 s). Then 10 epochs of every run are queued at
once and timed until written: the most epochs/s the writer takes when it is behind. Side by side:
SQLite, then a server with 1 worker (as ``docker/compose.yaml`` runs it) and with 2 workers, each
with one call in flight and with ``SERVER_CALLS``.

Usage: python benchmarks/writer_alone.py [--trials 64] [--seconds 15]
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _services import mlflow_server, postgres
from driver_scale import epoch_result, writer_alone

from study.mlflow_writer import SERVER_CALLS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=64, help="runs, each reporting one epoch a second")
    ap.add_argument("--seconds", type=int, default=15, help="seconds of reports")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlflow-writer-"))
    result = epoch_result()
    rows = {"sqlite": writer_alone(f"sqlite:///{root}/mlflow.db", result, args.trials, args.seconds,
                                   artifacts=str(root / "artifacts"))}
    with postgres("mlflow1", "mlflow2") as pg:
        for workers in (1, 2):
            with mlflow_server(f"{pg}/mlflow{workers}", workers=workers) as (url, _):
                for calls in (1, SERVER_CALLS):
                    rows[f"server_{workers}w_{calls}c"] = writer_alone(url, result, args.trials, args.seconds,
                                                                       server_calls=calls)
    print(f"\n{args.trials} runs, one epoch a second each, for {args.seconds} s")
    print(f"{'store':16s} {'lag p50 s':>9s} {'lag p99 s':>9s} {'most epochs/s':>13s}")
    for name, r in rows.items():
        print(f"{name:16s} {r['lag_p50_s']:9.2f} {r['lag_p99_s']:9.2f} {r['max_epochs_per_s']:13.0f}")
    print(json.dumps({"trials": args.trials, "seconds": args.seconds, "server_calls": SERVER_CALLS,
                      **{k: {m: round(v, 2) for m, v in r.items()} for k, r in rows.items()}}))


if __name__ == "__main__":
    main()

"""Where the libraries' own log records go while a study command runs: Ray's and Tune's (e.g.
"Resume experiment with: Tuner.restore(...)" on Ctrl-C, which our ``--resume`` replaces, and the
"operation took 0.7 s ... bottleneck" warnings), MLflow's (its table-creation INFO lines) and
alembic's are written to the study's log file, ``results/<study>/study.log``, not to the console.
What the study itself says (progress, verdicts, errors) stays on the console."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

LIBRARIES = ("ray", "mlflow", "alembic", "optuna")


@contextlib.contextmanager
def library_logs(path: Path) -> Iterator[Path]:
    """Route the ``LIBRARIES`` loggers to ``path`` (appended) for the block; restored after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {}
    for name in LIBRARIES:
        log = logging.getLogger(name)
        saved[name] = (log.handlers[:], log.propagate)
        log.handlers, log.propagate = [handler], False
    try:
        yield path
    finally:
        for name, (handlers, propagate) in saved.items():
            log = logging.getLogger(name)
            log.handlers, log.propagate = handlers, propagate
        handler.close()

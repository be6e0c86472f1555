"""Where a study's files live: its local folder of summaries and reports, each phase's Tune
experiments (local or on shared storage), and the Optuna database of its searches."""
from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from .errors import StudyError
from .spec import StudySpec

SEARCH_EXPERIMENT = "trials"  # the search's Tune experiment, under tune_storage(spec, "search")


def study_dir(spec: StudySpec) -> Path:
    """Local folder of the study's summaries: under ``storage_path``, or under ``./results`` when
    ``storage_path`` is a URI (``s3://...``), where Tune keeps results and checkpoints."""
    if "://" in spec.storage_path:
        return Path("results").resolve() / spec.name
    return Path(spec.storage_path).expanduser().resolve() / spec.name


def tune_storage(spec: StudySpec, phase: str = "search") -> str:
    """Where a phase's Tune experiments live (a local path or a URI)."""
    if "://" in spec.storage_path:
        return f"{spec.storage_path.rstrip('/')}/{spec.name}/{phase}"
    return str(study_dir(spec) / phase)


def check_writable(spec: StudySpec) -> None:
    """The study's local folder (under ``storage_path``) can be created and written, or one
    :class:`StudyError` naming it, before any work (Tune would fail half a minute in, with a pyarrow
    traceback). Storage given as a URI (``s3://``) is checked by Tune itself."""
    folder = study_dir(spec)
    field = "storage_path" if "://" not in spec.storage_path else "the local results folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StudyError(f"{field}: cannot write the study's folder {folder} ({exc.strerror or exc})") from None


def search_experiment(spec: StudySpec, phase: str = "search") -> str:
    """The first Tune experiment of one search (``phase``: :meth:`StudySpec.search_phase`), a local
    path or a URI."""
    return f"{tune_storage(spec, phase)}/{SEARCH_EXPERIMENT}"


def search_plan_file(spec: StudySpec, phase: str = "search") -> Path:
    """One search's Tune experiments (the first, then one per raise of its budget) and their budgets."""
    return study_dir(spec) / f"{phase}_plan.json"


def search_summary_file(spec: StudySpec, phase: str = "search") -> Path:
    return study_dir(spec) / f"{phase}_summary.json"


def repeat_plan_file(spec: StudySpec) -> Path:
    """The repeat phase's plan: which Tune grid holds which (strategy, seed) pairs, and whether it ended."""
    return study_dir(spec) / "repeat_plan.json"


def report_dir(spec: StudySpec) -> Path:
    return study_dir(spec) / "report"


def optuna_storage_uri(spec: StudySpec) -> str:
    """Optuna's study database: ``search.storage`` (PostgreSQL on a cluster), else a SQLite file
    beside MLflow's (both use alembic, so not inside it), or in the study folder when MLflow is a
    server; ``optuna-dashboard <uri>`` opens it."""
    if spec.search.storage:
        return spec.search.storage
    if spec.tracking.uri.startswith("sqlite:///"):
        db = Path(spec.tracking.uri.removeprefix("sqlite:///")).resolve()
        return f"sqlite:///{db.with_name(db.stem + '-optuna.db')}"
    folder = study_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)  # SQLite cannot create the file's folder
    return f"sqlite:///{folder / 'optuna.db'}"


SQLITE_BUSY_S = 60.0  # how long a write waits for another process's lock on a SQLite database


class _WALConnection(sqlite3.Connection):
    """A SQLite connection in write-ahead-log mode that syncs at checkpoints, not at every commit:
    a commit survives the process's death (a power cut may lose the last ones), readers do not
    block the writer, and an Optuna report costs a fraction of a millisecond instead of an fsync."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA journal_mode=WAL")
        self.execute("PRAGMA synchronous=NORMAL")


def optuna_engine_kwargs(uri: str) -> dict:
    """SQLAlchemy engine options of Optuna's storage at ``uri``. The driver writes to it for every
    trial's every result (OptunaSearch's intermediate reports), so each commit must be cheap:
    PostgreSQL commits without waiting for its WAL flush (``synchronous_commit=off``: a server crash
    may lose the last fraction of a second, never consistency); a SQLite file on a local disk uses
    :class:`_WALConnection` (not on a network file system, where SQLite's WAL does not work). SQLite
    waits up to ``SQLITE_BUSY_S`` for another process's lock (optuna-dashboard reading the file)."""
    if uri.startswith("sqlite:"):
        from .cluster import is_shared

        path = Path(uri.split(":///", 1)[1]).resolve()
        local = not is_shared(path.parent)
        return {"connect_args": {"timeout": SQLITE_BUSY_S, **({"factory": _WALConnection} if local else {})}}
    if uri.split(":", 1)[0].split("+")[0] == "postgresql":
        return {"connect_args": {"options": "-c synchronous_commit=off"}}
    return {}


def optuna_storage(spec: StudySpec):
    """The Optuna storage of the study's searches (engine options: :func:`optuna_engine_kwargs`);
    a new SQLite file's tables are created by one process at a time. Raises :class:`StudyError`
    naming the field when it cannot be opened."""
    import optuna
    import sqlalchemy.exc

    from .tracking import sqlite_init_lock

    uri = optuna_storage_uri(spec)
    kwargs = optuna_engine_kwargs(uri)
    try:
        with sqlite_init_lock(uri):
            return optuna.storages.RDBStorage(uri, engine_kwargs=kwargs)
    except (ImportError, RuntimeError, sqlalchemy.exc.SQLAlchemyError) as exc:
        field = "search.storage" if spec.search.storage else "tracking.uri (Optuna's file beside it)"
        why = str(exc).strip().splitlines()[0][:300]
        if "table schema" in why:  # alembic's version table is another application's (MLflow's?)
            why = "the database holds another application's tables (MLflow's?): give Optuna a database of its own"
        raise StudyError(f"{field}: Optuna cannot open its storage at {uri} ({type(exc).__name__}: {why})") from None


def optuna_study_name(spec: StudySpec, strategy: str, phase: str = "search") -> str:
    """The Optuna study of one strategy's search (``phase``: :meth:`StudySpec.search_phase`)."""
    return f"{spec.name}.{strategy}.{phase}"

"""``search.storage``: Optuna's studies on a real PostgreSQL server (Debian's, started here on
loopback), as on a cluster; a password in the URL, an unreachable server and a database that is
MLflow's are each one message naming the field, before Ray starts."""
from pathlib import Path

import optuna
import pytest
from _services import pg_bin, postgres
from conftest import require_tool
from mlflow import MlflowClient

from study.errors import SpecError, StudyError
from study.layout import optuna_storage
from study.search import run_search
from study.spec import load_spec


@pytest.fixture(scope="module")
def pg():
    if pg_bin("initdb") is None:
        require_tool("pg_ctlcluster")  # fails (or skips with STUDY_ALLOW_MISSING_TOOLS=1), naming the package
    with postgres("optuna", "mlflow") as url:
        yield url


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_a_search_keeps_its_optuna_studies_in_postgresql(pg, ray_local, tiny_spec_file):
    spec = load_spec(tiny_spec_file(name="pgsearch", samples=3), {"search": {"storage": f"{pg}/optuna"}})
    run_search(spec)
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(f"{pg}/optuna")}
    assert sorted(summaries) == ["pgsearch.control.search", "pgsearch.upsample.search"]
    for name in summaries:
        trials = optuna.load_study(study_name=name, storage=f"{pg}/optuna").get_trials()
        assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert any(t.intermediate_values for t in trials)  # epochs before the last, for optuna-dashboard
    mlflow_db = Path(spec.tracking.uri.removeprefix("sqlite:///"))
    assert not mlflow_db.with_name(mlflow_db.stem + "-optuna.db").exists()  # no SQLite file beside MLflow's


def test_a_password_in_the_url_is_refused(tiny_spec_file):
    with pytest.raises(SpecError, match=r"search.storage: holds a password, and the spec is logged to MLflow: "
                                        r"leave it out of the URL and set PGPASSWORD"):
        load_spec(tiny_spec_file(), {"search": {"storage": "postgresql://optuna:secret@db:5432/optuna"}})
    with pytest.raises(SpecError, match=r"search.storage: 'redis://db' is not a database URL Optuna takes"):
        load_spec(tiny_spec_file(), {"search": {"storage": "redis://db"}})


def test_an_unreachable_server_is_named_before_ray_starts(tiny_spec_file, port):
    spec = load_spec(tiny_spec_file(name="nopg"), {"search": {"storage": f"postgresql://optuna@127.0.0.1:{port()}/x"}})
    with pytest.raises(StudyError, match=r"search.storage: Optuna cannot open its storage at postgresql://optuna@"
                                         r"127.0.0.1:\d+/x \(OperationalError: .*"):
        run_search(spec)


def test_mlflows_own_database_is_refused_for_optuna(pg, tiny_spec_file):
    MlflowClient(f"{pg}/mlflow").search_experiments()  # MLflow creates its tables (and alembic's version)
    spec = load_spec(tiny_spec_file(name="shared"), {"search": {"storage": f"{pg}/mlflow"}})
    with pytest.raises(StudyError, match=r"search.storage: .* the database holds another application's tables "
                                         r"\(MLflow's\?\): give Optuna a database of its own"):
        optuna_storage(spec)

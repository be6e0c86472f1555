"""Resume says what it does: a finished study is summarised from its records without starting Ray;
a larger search budget runs only the extra trials; any other change to the search is refused,
naming the fields; a later phase refuses overrides it cannot honour."""
import optuna
import pytest
from mlflow import MlflowClient

from study.cli import main
from study.layout import optuna_storage_uri
from study.spec import load_spec


def run(capsys, *args):
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr()


@pytest.mark.slow
def test_resume_honours_a_larger_budget_and_refuses_other_changes(ray_local, tiny_spec_file, capsys):
    path = str(tiny_spec_file(name="grow", samples=2))
    code, out = run(capsys, "run", path, "--search-only")
    assert code == 0, out.err

    code, out = run(capsys, "run", path, "--resume", "--search-only")
    assert code == 0, out.err
    assert "the search of study 'grow' is complete: summarising it from its records" in out.err

    code, out = run(capsys, "run", path, "--resume", "--search-only", "--set", "training.epochs=4",
                    "--set", "search.metric=val/sensitivity")
    assert code == 2
    assert ("study: error: --resume: the spec of study 'grow' changed since its search started (search.metric: "
            "'val/balanced_accuracy' -> 'val/sensitivity'; training.epochs: 3 -> 4)") in out.err

    code, out = run(capsys, "run", path, "--resume", "--search-only", "--set", "search.samples_per_strategy=1")
    assert code == 2 and "search.samples_per_strategy: 2 -> 1" in out.err

    code, out = run(capsys, "run", path, "--resume", "--search-only", "--set", "search.samples_per_strategy=3")
    assert code == 0, out.err
    assert "note: search.samples_per_strategy grew to 3: 1 more trial(s) per strategy" in out.err
    assert "[control] 1/1" in out.out and "[upsample] 1/1" in out.out  # only the extra trials ran
    assert "search: 2/2 trials done after" in out.err  # the status, in a log as a plain line
    spec = load_spec(path)
    for strategy in ("control", "upsample"):
        study = optuna.load_study(study_name=f"grow.{strategy}.search", storage=optuna_storage_uri(spec))
        assert len(study.trials) == 3
    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name("grow")
    children = [r for r in client.search_runs([exp.experiment_id], "tags.phase = 'search'")
                if "trial_id" in r.data.tags]
    assert sorted(r.data.tags["strategy"] for r in children) == ["control"] * 3 + ["upsample"] * 3

    code, out = run(capsys, "run", path, "--resume", "--search-only", "--set", "search.samples_per_strategy=3")
    assert code == 0 and "is complete: summarising it from its records" in out.err

    code, out = run(capsys, "list", "--tracking-uri", spec.tracking.uri)
    assert code == 0
    line = next(ln for ln in out.out.splitlines() if ln.split()[:1] == ["grow"])
    assert line.split()[1:4] == ["grow", "search", "6"] and "finished" in line and line.rstrip().endswith("no")


@pytest.mark.slow
def test_a_later_phase_refuses_overrides_it_cannot_honour(ray_local, tiny_spec_file, capsys):
    path = str(tiny_spec_file(name="honour", samples=1))
    assert run(capsys, "run", path, "--search-only")[0] == 0
    code, out = run(capsys, "repeat", path, "--set", "training.epochs=2")
    assert code == 2
    assert ("study: error: study repeat re-runs the configs the search of study 'honour' chose and honours only "
            "the repeats, compare, resources, ray and failure settings; changed since the search: "
            "training.epochs: 3 -> 2") in out.err
    code, out = run(capsys, "compare", path, "--set", "model=resnet18_cifar")
    assert code == 2 and "model: 'simple_cnn' -> 'resnet18_cifar'" in out.err


def test_resume_and_fresh_together_is_an_error(tiny_spec_file, capsys):
    code, out = run(capsys, "run", str(tiny_spec_file()), "--resume", "--fresh")
    assert code == 2
    assert "--resume continues the study's search and --fresh deletes it: give one of them" in out.err


def test_optuna_trials_left_running_by_a_hard_kill_are_reconciled(tiny_spec_file):
    from study.layout import optuna_storage
    from study.runtime import TrialResult
    from study.search import _reconcile_optuna

    spec = load_spec(tiny_spec_file(name="reconcile"))
    study = optuna.create_study(study_name="reconcile.control.search", storage=optuna_storage(spec),
                                direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True)
    told, lost = study.ask({"lr": lr}), study.ask({"lr": lr})  # both RUNNING, as a kill leaves them
    ended = TrialResult({"val/balanced_accuracy": 0.71, "epoch": 3}, None, "/x",
                        {"strategy": "control", "trial": {"lr": told.params["lr"], "seed": 0}}, finished=True)
    _reconcile_optuna(spec, [ended], "search")
    trials = optuna.load_study(study_name="reconcile.control.search", storage=optuna_storage(spec)).trials
    assert [(t.state.name, t.value) for t in trials] == [("COMPLETE", 0.71), ("FAIL", None)]
    assert lost.number == 1

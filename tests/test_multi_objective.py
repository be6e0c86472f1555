"""Multi-objective search: spec rules, the Pareto front, and a real search on local Ray."""
import json

import optuna
import pytest
from mlflow import MlflowClient

from study.errors import SpecError
from study.layout import optuna_storage_uri, study_dir
from study.pareto import pareto_indices
from study.search import run_search
from study.spec import load_spec

OBJECTIVES = "  objectives: [val/sensitivity, val/ppv]\n"
ASHA = "scheduler: {type: asha, grace_period: 1, reduction_factor: 2}\n"


def multi_objective(text: str, scheduler: str = "") -> str:
    text = text.replace("  max_concurrent: 2\n", "  max_concurrent: 2\n" + OBJECTIVES)
    return text.replace(ASHA, scheduler)


def test_pareto_indices_keep_exactly_the_non_dominated_points():
    points = [[0.9, 0.1], [0.5, 0.5], [0.4, 0.4], [0.1, 0.9], [0.5, 0.5], [0.9, 0.05]]
    assert pareto_indices(points) == [0, 1, 3, 4]
    assert pareto_indices(points, maximise=False) == [2, 3, 5]


def test_objectives_run_with_fifo_and_asha_is_one_error(tiny_spec_file):
    path = tiny_spec_file()
    text = path.read_text()
    path.write_text(multi_objective(text))
    assert load_spec(path).scheduler.type == "fifo"
    path.write_text(multi_objective(text, ASHA))
    with pytest.raises(SpecError, match="scheduler.type: ASHA stops trials on one metric; a "
                                        "multi-objective search \\(search.objectives\\) needs type fifo"):
        load_spec(path)


@pytest.mark.parametrize("objectives, message", [
    ("[val/sensitivity]", "search.objectives: Value error, give two or more objectives"),
    ("[val/sensitivity, test/ppv]", "search.objectives: expected val/<metric> with metric in loss"),
    ("[val/sensitivity, val/loss]", "search: objectives: val/loss cannot be maximised with the others"),
])
def test_bad_objectives_name_the_field(tiny_spec_file, objectives, message):
    path = tiny_spec_file()
    path.write_text(multi_objective(path.read_text()).replace("[val/sensitivity, val/ppv]", objectives))
    with pytest.raises(SpecError, match=message.replace("Value error, ", "")):
        load_spec(path)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_multi_objective_search_records_the_pareto_front(ray_local, tiny_spec_file):
    path = tiny_spec_file(name="pareto", samples=4)
    path.write_text(multi_objective(path.read_text()))
    spec = load_spec(path)
    (summary,) = run_search(spec).values()
    assert summary["objectives"] == ["val/sensitivity", "val/ppv"]
    on_disk = json.loads((study_dir(spec) / "search_summary.json").read_text())
    client = MlflowClient(spec.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("pareto").experiment_id])
    for strategy, part in summary["strategies"].items():
        assert part["trials"] == 4 and part["stopped_early"] == 0 and not part["failed"]
        assert on_disk["strategies"][strategy]["pareto_front"] == part["pareto_front"]
        children = [r for r in runs if r.data.tags.get("strategy") == strategy and "trial_id" in r.data.tags]
        final = {r.data.tags["trial_id"]: (r.data.metrics["val/sensitivity"], r.data.metrics["val/ppv"])
                 for r in children}
        front = {p["trial_id"] for p in part["pareto_front"]}
        assert front == {t for t in final if not any(
            a[0] >= final[t][0] and a[1] >= final[t][1] and a != final[t] for a in final.values())}
        tagged = {r.data.tags["trial_id"] for r in children if r.data.tags.get("pareto_front") == "true"}
        assert tagged == front
        assert part["best"]["trial_id"] in front
        parent = next(r for r in runs if r.data.tags.get("strategy") == strategy
                      and r.data.tags.get("role") == "parent")
        logged = json.loads(open(client.download_artifacts(parent.info.run_id, "summary.json")).read())
        assert logged["pareto_front"] == part["pareto_front"]
        study = optuna.load_study(study_name=f"pareto.{strategy}.search", storage=optuna_storage_uri(spec))
        assert len(study.directions) == 2 and len(study.trials) == 4

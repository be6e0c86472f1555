from pathlib import Path

import pytest

from study.errors import SpecError
from study.spec import load_spec, trial_config

BASE = """
name: s1
data: {source: synthetic, synthetic: {n: 200}, load_size: 20, image_size: 16}
model: simple_cnn
training: {epochs: 3, batch_size: 16}
strategies: {control: control, mine: {sampler: class_balanced, loss: ce}}
search:
  space:
    lr: {loguniform: [1.0e-4, 1.0e-2]}
"""


def write(tmp_path, text):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


SHIPPED = sorted(str(p) for p in (Path(__file__).parents[1] / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: Path(p).name)
def test_shipped_specs_validate(path):
    spec = load_spec(path)
    assert spec.strategies and spec.search.samples_per_strategy >= 1


def test_searching_a_nested_knob_leaves_the_preset_alone():
    from trainables.strategies import PRESETS

    spec = load_spec("search_spaces/lr_policies_cpu.yaml")
    assert PRESETS.get("lr_cosine")["lr_options"] == {"warmup_epochs": 1}
    assert spec.knobs("cosine") == PRESETS.get("lr_cosine")


def test_repeats_may_compare_tta_metrics_of_strategies_that_use_tta(tmp_path):
    text = BASE + "repeats: {metrics: [test/sensitivity, test_tta/sensitivity]}\n"
    with pytest.raises(SpecError, match="test_tta/ metrics need tta > 0 in every strategy; control, mine"):
        load_spec(write(tmp_path, text))
    text = text.replace("training: {epochs: 3, batch_size: 16}", "training: {epochs: 3, batch_size: 16, tta: 2}")
    assert load_spec(write(tmp_path, text)).repeats.metrics[1] == "test_tta/sensitivity"


def test_a_valid_spec_gives_trial_configs(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    cfg = trial_config(spec, "mine", seed=4)
    assert cfg["sampler"] == "class_balanced" and cfg["seed"] == 4 and cfg["epochs"] == 3


@pytest.mark.parametrize("change, message", [
    ("lr: {loguniform: [1.0e-4, 1.0e-2]}", None),
    ("batch_size: {int: [8, 32]}", None),
    ("lr: {loguniform: [0, 1.0e-2]}", "search.space.lr.loguniform: low must be > 0"),
    ("lr: {uniform: [0.1, 0.01]}", "search.space.lr.uniform: low (0.1) must be < high (0.01)"),
    ("lr: {normal: [0, 1]}", "search.space.lr.normal: Extra inputs are not permitted"),
    ("lr: {choice: []}", "search.space.lr.choice: choice needs at least one value"),
    ("sampler: {choice: [uniform, smote]}", "search.space.sampler: unknown sampler 'smote'"),
    ("lr: {uniform: [-1.0, 1.0]}", "search.space.lr: Input should be greater than 0"),
    ("vabal.exponent: {uniform: [0.5, 2]}", "search.space.vabal.use_for: Field required"),
    ("model_options.batch_norm: {choice: [true, false]}", None),
    ("model_options.dropout: {uniform: [0.0, 0.5]}", None),
    ("model_options.dropout: {uniform: [0.0, 1.5]}", "search.space.model_options.dropout: Input should be less than 1"),
])
def test_search_space_errors_name_the_yaml_path(tmp_path, change, message):
    text = BASE.replace("lr: {loguniform: [1.0e-4, 1.0e-2]}", change)
    if message is None:
        load_spec(write(tmp_path, text))
        return
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(write(tmp_path, text))


@pytest.mark.parametrize("old, new, message", [
    ("model: simple_cnn", "model: vit", "model: unknown model 'vit'"),
    ("training: {epochs: 3, batch_size: 16}", "training: {epochs: -3}",
     "training.epochs: Input should be greater than or equal to 1"),
    ("training: {epochs: 3, batch_size: 16}", "training: {epoch: 3}", "training: epoch: not a training setting"),
    ("mine: {sampler: class_balanced, loss: ce}", "mine: {sampler: class_balanced, loss: dice}",
     "strategies.mine.loss: unknown loss 'dice'"),
    ("control: control", "control: contrl", "strategies: control: unknown strategy preset 'contrl'"),
    ("name: s1", "name: s1\nserch: {}", "serch: Extra inputs are not permitted"),
    ("data: {source: synthetic,", "data: {source: dicom,", "data.source: unknown data source 'dicom'"),
    ("name: s1", "name: s1\nrepeats: {metrics: [val/sensitivity]}",
     "repeats.metrics: 'val/sensitivity': repeats are compared on the test split"),
    ("name: s1", "name: s1\nscheduler: {type: asha, grace_period: 9}",
     r"scheduler.grace_period \(9\) exceeds the epochs \(3\)"),
    ("search:\n", "search:\n  startup_trials: 0\n",
     "search.startup_trials: Input should be greater than or equal to 1"),
    ("search:\n", "search:\n  sampler: nsga2\n  startup_trials: 1\n",
     "search.startup_trials: NSGA-II's population"),
    ("search:\n", "search:\n  metric: val/sensitivty\n",
     "search.metric: expected val/<metric> with metric in .*got 'val/sensitivty'"),
    ("search:\n", "search:\n  metric: test/sensitivity\n", "search.metric: expected val/<metric>"),
    ("search:\n", "search:\n  metric: val/loss\n",
     "search.mode: val/loss is minimised: with mode max the search would look for the worst config; "
     "set search.mode: min"),
    ("name: s1", "name: s1\nrepeats: {metrics: [test/sensitivty]}",
     "repeats.metrics: expected test/<metric> with metric in .*got 'test/sensitivty'"),
    ("training: {epochs: 3, batch_size: 16}", "training: {epochs: 3, monitor: train/loss}",
     "training.monitor: expected val/<metric>"),
    ("name: s1", "name: s1\nrepeats: {metrics: [test_at_spec95/sensitivity]}",
     "repeats.metrics: test_at_spec95/sensitivity is taken at operating point 'spec95', which "
     "evaluation.operating_points does not define .* in strategy control; add it under training.evaluation"),
    ("search:\n", "search:\n  metric: val/brier\n", "search.mode: val/brier is minimised"),
    ("name: s1", "name: s1\ncompare: {rope: 0}", "compare.rope: Input should be greater than 0"),
    ("training: {epochs: 3, batch_size: 16}",
     "training: {epochs: 3, evaluation: {operating_points: [youden, {spec: 0.9}]}}",
     "training.evaluation.operating_points: item 1: {'spec': 0.9} is not a rule"),
])
def test_spec_errors_name_the_yaml_path(tmp_path, old, new, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, BASE.replace(old, new)))


def test_env_vars_expand_with_defaults_and_unset_is_an_error(tmp_path, monkeypatch):
    text = BASE.replace("source: synthetic,", "source: imagefolder, path: \"${CXR_TEST_DIR}\",")
    monkeypatch.setenv("CXR_TEST_DIR", str(tmp_path))
    assert str(load_spec(write(tmp_path, text)).data.path) == str(tmp_path)
    monkeypatch.delenv("CXR_TEST_DIR")
    with pytest.raises(SpecError, match="data.path: environment variable CXR_TEST_DIR is not set"):
        load_spec(write(tmp_path, text))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(SpecError, match="spec file does not exist"):
        load_spec(tmp_path / "none.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(write(tmp_path, "name: [unclosed"))


def test_a_key_given_twice_is_refused_not_last_one_wins(tmp_path):
    text = BASE.replace("strategies: {control: control, mine: {sampler: class_balanced, loss: ce}}",
                        "strategies:\n  control: control\n  control: upsample\n  mine: {loss: ce}")
    with pytest.raises(SpecError, match=r"spec.yaml: not valid YAML at line 8, column 3: key 'control' is given "
                                        r"twice \(lines 7 and 8\); keep one"):
        load_spec(write(tmp_path, text))


def test_a_byte_that_is_not_utf8_is_one_message_with_its_place(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(BASE.encode().replace(b"name: s1", b"name: s1 # caf\xe9"))
    with pytest.raises(SpecError, match=r"spec.yaml: line 2, column 15: byte 0xe9 is not UTF-8 text"):
        load_spec(path)


def test_set_errors_are_blamed_on_set_and_the_file_on_the_file(tmp_path):
    from study.spec import parse_overrides

    path = write(tmp_path, BASE)
    with pytest.raises(SpecError, match=r"^--set: training.epochs: Input should be greater than or equal to 1$"):
        load_spec(path, parse_overrides(["training.epochs=0"]))
    broken = tmp_path / "broken.yaml"
    broken.write_text(BASE.replace("epochs: 3", "epochs: 0"))
    with pytest.raises(SpecError, match=r"broken.yaml: training.epochs: Input should be"):
        load_spec(broken, parse_overrides(["training.epochs=3"]))
    assert load_spec(path, parse_overrides(["training.epochs=5", "search.samples_per_strategy=2"])).epochs == 5
    with pytest.raises(SpecError, match=r"--set 'lr=0.1': 'lr' is not a spec key .*; a training setting goes "
                                        r"under training: --set training.lr=0.1"):
        parse_overrides(["lr=0.1"])
    with pytest.raises(SpecError, match=r"--set 'noequals': expected KEY=VALUE"):
        parse_overrides(["noequals"])


def test_a_search_without_a_space_is_refused_before_anything_runs(tmp_path):
    spec = load_spec(write(tmp_path, BASE.replace("  space:\n    lr: {loguniform: [1.0e-4, 1.0e-2]}\n", "  space: {}\n")))
    from study.search import run_search
    with pytest.raises(SpecError, match="search.space: nothing to search for control, mine; give at least one value"):
        run_search(spec)

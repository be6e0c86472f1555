"""The synthetic data reproduces the thesis' imbalance effect with the default settings."""
import numpy as np
import pytest

from study.spec import load_spec, trial_config
from trainables.train import run

SEEDS = range(4)


def mean_test_metrics(strategy):
    spec = load_spec("search_spaces/quickstart.yaml")
    overrides = {"num_threads": 2, "epochs": 5, "lr": 1e-3, "batch_size": 64}
    finals = [run(trial_config(spec, strategy, seed, overrides), lambda m, c: None)
              for seed in SEEDS]
    return {k: float(np.mean([f[k] for f in finals])) for k in ("test/sensitivity", "test/accuracy")}


@pytest.mark.slow
def test_control_misses_covid_and_class_balanced_sampling_finds_it():
    control = mean_test_metrics("control")
    upsample = mean_test_metrics("upsample")
    # control: covid sensitivity clearly below overall accuracy (thesis: 47 vs 90)
    assert control["test/sensitivity"] < control["test/accuracy"] - 0.3
    # class-balanced sampling raises it
    assert upsample["test/sensitivity"] > control["test/sensitivity"] + 0.2

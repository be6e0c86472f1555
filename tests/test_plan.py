"""``study plan``: the planned number of seeds, re-simulated from the distribution the pilot came
from with the compare stage's own test (Wilcoxon per comparison, Holm across them), gives the asked
power; the command reads a pilot from MLflow and writes its table."""
import subprocess
import sys

import numpy as np
import pytest

from study.plan import planned_seeds
from study.stats import holm, seeds_needed, wilcoxon

SHIFTS = np.array([0.6, 1.0])  # effects in units of the noise's SD, one per comparison


def power_by_the_compare_stage(n: int, simulations: int = 600, seed: int = 11) -> np.ndarray:
    """Fresh studies of n seeds from the true distribution, tested as the compare stage tests them."""
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(SHIFTS))
    for _ in range(simulations):
        d = rng.normal(SHIFTS, 1.0, (n, len(SHIFTS)))
        p = [wilcoxon(d[:, j], np.zeros(n))[1] for j in range(len(SHIFTS))]
        rejected, _ = holm(p, 0.05)
        hits += rejected & (np.median(d, 0) > 0)
    return hits / simulations


@pytest.mark.parametrize("target", [0.8, 0.9])
def test_the_planned_seeds_reach_the_asked_power_when_re_simulated(target):
    pilot = np.random.default_rng(3).normal(SHIFTS, 1.0, (400, len(SHIFTS)))  # a large pilot: its estimate is close
    planned, curve = planned_seeds(pilot, target, 0.05, 60, 400, seed=0)
    assert all(n is not None for n in planned) and planned[1] < planned[0]  # the larger effect needs fewer
    for j, n in enumerate(planned):
        assert curve[n][j] >= target and (n == 5 or curve[n - 1][j] < target + 0.05)
        assert power_by_the_compare_stage(n)[j] == pytest.approx(target, abs=0.08)


def test_plan_reads_the_pilot_from_mlflow_and_writes_its_table(tmp_path):
    from test_report import finished_study

    spec = finished_study(tmp_path)
    r = subprocess.run([sys.executable, "-m", "study.cli", "plan", str(tmp_path / "reported.yaml"), "--effect", "0.05",
                        "--simulations", "100", "--max-seeds", "20"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| metric | comparison | pilot seeds | median difference | power now | seeds for the observed effect | " \
           "seeds for an effect of 0.05 |" in r.stdout
    folder = tmp_path / "results" / spec.name / "report"
    rows = (folder / "plan.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2  # 3 metrics x 2 comparisons against control
    # loss_weight raises sensitivity by ~50 points on every seed: planned at the fewest seeds with which
    # Holm over 2 comparisons can reject at all
    sensitivity = [r for r in rows if r.startswith("test/sensitivity,loss_weight vs control")][0]
    assert sensitivity.split(",")[5] == str(seeds_needed(0.05, 2)) == "7"

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from study.stats import compare, friedman, min_p_exact, rank_biserial, seeds_needed, wilcoxon


def table(**cols):
    return pd.DataFrame(cols)


def test_n6_all_seeds_agree_gives_the_exact_minimum():
    t = table(control=[0.40, 0.45, 0.50, 0.42, 0.38, 0.47], upsample=[0.60, 0.62, 0.71, 0.55, 0.66, 0.58])
    rep = compare(t, "test/sensitivity", "control")
    (c,) = rep.comparisons
    assert c.p_value == pytest.approx(0.03125) and c.method == "exact"
    assert c.p_value == pytest.approx(stats.wilcoxon(t.upsample, t.control).pvalue)
    assert c.significant and c.wins == 6 and c.rank_biserial == 1.0 and c.p_improvement == 1.0
    assert c.median_diff == pytest.approx(np.median(t.upsample - t.control))
    assert c.ci_low <= c.median_diff <= c.ci_high
    assert c.verdict.startswith("upsample raises test/sensitivity by a median 18.5 points [")
    assert "6 of 6 seeds better" in c.verdict and not rep.warnings


def test_n5_cannot_be_significant_and_says_so():
    t = table(control=[0.1, 0.2, 0.3, 0.4, 0.5], better=[0.9, 0.8, 0.7, 0.95, 0.85])
    rep = compare(t, "test/accuracy", "control")
    (c,) = rep.comparisons
    assert c.p_value == pytest.approx(0.0625) and not c.significant
    assert rep.warnings[0].startswith("with n = 5 seeds no comparison can reach p < 0.05")
    assert "use at least 6 seeds" in rep.warnings[0]


def test_zero_differences_and_ties_use_the_permutation_distribution_and_are_reported():
    a = np.array([0.5, 0.6, 0.6, 0.7, 0.8, 0.9, 0.55, 0.65])
    b = np.array([0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.45, 0.75])  # one zero, tied |differences|
    stat, p, method, zeros, ties = wilcoxon(a, b)
    assert zeros == 1 and ties and method == "permutation"
    d = np.round(a - b, 9)  # the differences on the comparison grid: 0.1 - ulps and 0.1 + ulps tie
    ref = stats.wilcoxon(d, zero_method="wilcox", method=stats.PermutationMethod(n_resamples=9999, rng=0))
    assert p == pytest.approx(ref.pvalue) and stat == pytest.approx(ref.statistic)
    rep = compare(table(base=b, new=a), "val/accuracy", "base")
    assert rep.comparisons[0].n_used == 7 and "1 tied" in rep.comparisons[0].verdict


def test_differences_within_one_ulp_are_ties_everywhere():
    """Balanced accuracies equal in exact arithmetic, (0 + 4/40 + 6/30)/3 and (0 + 0 + 9/30)/3, differ
    by ulps as floats: they tie (6 seeds better, 2 tied, permutation p = 2/2^6), not a win and a loss."""
    equal_a, equal_b = (0 + 4 / 40 + 6 / 30) / 3, (0 + 0 + 9 / 30) / 3
    assert equal_a != equal_b  # the float trap itself
    base = [equal_b, 0.40, 0.45, equal_b, 0.50, 0.42, 0.38, 0.47]
    new = [equal_a, 0.60, 0.62, equal_a, 0.71, 0.55, 0.66, 0.58]
    t = table(control=base, upsample=new)
    (c,) = compare(t, "test/balanced_accuracy", "control").comparisons
    assert (c.wins, c.losses, c.zeros, c.n_used) == (6, 0, 2, 6)
    assert c.method == "permutation" and c.p_value == pytest.approx(2 / 2**6)
    assert c.p_improvement == pytest.approx((6 + 0.5 * 2) / 8)
    assert "6 of 8 seeds better, 2 tied" in c.verdict
    # the other way round: the baseline's tiny edge is no loss either
    (c,) = compare(table(control=new, upsample=new[:1] + base[1:2] + new[2:]), "test/accuracy",
                   "control").comparisons
    assert c.losses == 1 and c.zeros == 7


def test_equal_differences_tie_in_rank_and_values_tie_in_friedman():
    a = np.array([0.3, 0.6, 0.9, 0.5, 0.7, 0.2])
    b = a - np.array([0.1, 0.1, 0.1, 0.2, 0.3, 0.05])  # float differences 0.1 -+ ulps
    _, _, _, _, ties = wilcoxon(a, b)
    assert ties  # the three differences of 0.1 tie after rounding to the grid
    t = table(x=[(0 + 4 / 40 + 6 / 30) / 3] * 3, y=[(0 + 0 + 9 / 30) / 3] * 3, z=[0.5] * 3)
    assert friedman(t)["mean_ranks"]["x"] == friedman(t)["mean_ranks"]["y"] == 2.5


def test_a_seed_missing_a_value_is_left_out_and_named_never_a_nan_verdict():
    t = table(control=[0.4, 0.5, np.nan, 0.45, 0.5, 0.4, 0.41], new=[0.6, 0.7, 0.65, 0.62, 0.7, 0.6, 0.66])
    rep = compare(t, "test/sensitivity", "control")
    assert rep.comparisons[0].n == 6 and "nan" not in rep.comparisons[0].verdict
    assert any("1 seed(s) left out" in w and "seed 2 (control)" in w for w in rep.warnings)
    with pytest.raises(ValueError, match="test/sensitivty: no seed has a value for every strategy"):
        compare(table(control=[np.nan] * 6, new=[np.nan] * 6), "test/sensitivty", "control")


def test_holm_matches_statsmodels_and_friedman_matches_scipy():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.6, 12)
    t = table(control=base, a=base + 0.1 + rng.normal(0, 0.02, 12), b=base + rng.normal(0, 0.05, 12),
              c=base - 0.05 + rng.normal(0, 0.02, 12))
    rep = compare(t, "test/balanced_accuracy", "control")
    raw = [c.p_value for c in rep.comparisons]
    for c, ref in zip(rep.comparisons, multipletests(raw, method="holm")[1]):
        assert c.p_holm == pytest.approx(ref)
    for c in rep.comparisons:
        assert c.p_value == pytest.approx(stats.wilcoxon(t[c.strategy], t.control).pvalue)
    f = rep.friedman
    assert f["p_value"] == pytest.approx(stats.friedmanchisquare(*[t[s] for s in t]).pvalue)
    assert min(f["mean_ranks"], key=f["mean_ranks"].get) == "a"
    # Demšar (2006), Table 5: q_0.05 = 2.569 for k = 4
    assert f["critical_difference"] == pytest.approx(2.569 * np.sqrt(4 * 5 / (6 * 12)), rel=1e-3)
    assert {c.strategy: c.significant for c in rep.comparisons}["a"]


def test_lower_is_better_metrics_flip_the_direction():
    t = table(control=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0], new=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    (c,) = compare(t, "test/loss", "control", higher_is_better=False).comparisons
    assert c.wins == 6 and c.rank_biserial == 1.0 and "lowers test/loss by a median 0.2" in c.verdict


def test_rank_biserial_and_minimums():
    assert rank_biserial(np.array([1, 2, 3.0]), np.array([0, 0, 0.0])) == 1.0
    assert rank_biserial(np.array([1, -2, 3.0]), np.zeros(3)) == pytest.approx((1 + 3 - 2) / 6)
    assert min_p_exact(6) == 0.03125
    assert seeds_needed(0.05, 1) == 6 and seeds_needed(0.05, 7) == 9 and seeds_needed(0.05, 28) == 11


def test_friedman_needs_three_strategies():
    assert friedman(table(a=[1, 2.0], b=[2, 3.0])) is None


@pytest.mark.slow
def test_a_a_comparisons_are_significant_at_most_alpha():
    rng = np.random.default_rng(42)
    hits, runs = 0, 200
    for _ in range(runs):
        seed_effect = rng.normal(0.6, 0.1, 10)
        t = table(control=seed_effect + rng.normal(0, 0.05, 10), same=seed_effect + rng.normal(0, 0.05, 10))
        hits += compare(t, "test/accuracy", "control", n_boot=99).comparisons[0].significant
    assert hits / runs <= 0.05


@pytest.mark.slow
def test_a_planted_shift_is_detected():
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(50):
        base = rng.normal(0.5, 0.1, 12)
        t = table(control=base + rng.normal(0, 0.03, 12), shifted=base + 0.05 + rng.normal(0, 0.03, 12))
        found += compare(t, "test/accuracy", "control", n_boot=99).comparisons[0].significant
    assert found / 50 >= 0.8


def test_rope_identical_strategies_are_practically_equivalent():
    x = np.random.default_rng(0).normal(0.6, 0.05, 10)
    table = pd.DataFrame({"control": x, "same": x.copy()})
    c = compare(table, "test/sensitivity", "control", rope=0.01, n_boot=199).comparisons[0]
    assert c.p_rope_equivalent > 0.99 and c.p_rope_better < 0.01
    assert "not significant" in c.verdict and "practically equivalent (P = 1.00, ROPE ±1 points)" in c.verdict


def test_rope_a_shift_far_outside_the_rope_is_better_and_direction_follows_the_metric():
    rng = np.random.default_rng(1)
    x = rng.normal(0.6, 0.02, 10)
    table = pd.DataFrame({"control": x, "up": x + 0.2 + rng.normal(0, 0.01, 10)})
    c = compare(table, "test/sensitivity", "control", rope=0.01, n_boot=199).comparisons[0]
    assert c.p_rope_better > 0.99 and c.verdict.endswith("better (P = 1.00, ROPE ±1 points)")
    loss = compare(table, "test/loss", "control", higher_is_better=False, rope=0.01, n_boot=199).comparisons[0]
    assert loss.p_rope_worse > 0.99  # a higher loss is worse


def test_rope_figures_equal_baycomps_on_a_fixed_seed():
    from baycomp import SignedRankTest
    rng = np.random.default_rng(2)
    x, y = rng.normal(0.6, 0.05, 12), rng.normal(0.59, 0.05, 12)
    c = compare(pd.DataFrame({"control": y, "a": x}), "test/auroc", "control", rope=0.02, n_boot=199,
                seed=7).comparisons[0]
    expected = SignedRankTest.probs(x, y, 0.02, nsamples=20000, random_state=7)
    assert (c.p_rope_better, c.p_rope_equivalent, c.p_rope_worse) == pytest.approx(expected)
    assert sum(expected) == pytest.approx(1)
    assert np.isnan(compare(pd.DataFrame({"control": y, "a": x}), "test/auroc", "control",
                            n_boot=199).comparisons[0].p_rope_equivalent)  # no ROPE asked, none computed

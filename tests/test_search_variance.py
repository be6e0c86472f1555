"""Verdicts over several searches (``repeats.search_seeds``): the search x seed test keeps its
false-positive rate at alpha when the searches differ (search-level noise), when the seeds move
every search alike (seed-level noise) and when both do, where a test of all pairs as independent,
or of the search means alone, does not; its special cases are scipy's t-tests; each search's own
verdict and the robustness count; the spec's checks; and a real study with two search seeds
(separate searches, repeats of each, resumable, compared)."""
import re

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy import stats

from study.errors import SpecError
from study.layout import optuna_storage, optuna_study_name, search_summary_file
from study.repeats import run_repeats
from study.report import run_compare
from study.results import repeat_table
from study.search import run_search
from study.spec import load_spec
from study.stats import compare, search_seed_test

ALPHA = 0.05


def simulate_aa(rng, searches: int, seeds: int, tau: float, shared: float, noise: str,
                scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired differences of two equally good strategies, every search repeated over the same seeds:
    each search chooses each strategy's config (the difference's search term, SD ``tau``), each seed
    moves the difference the same way in every search (SD ``shared``: the same initial weights, data
    order and split), and each (search, seed) run adds noise of the kind named (SD about ``scale``)."""
    u = rng.normal(0, tau, (searches, 1))
    v = rng.normal(0, shared, (1, seeds))
    if noise == "normal":
        e = rng.normal(0, scale, (searches, seeds))
    elif noise == "heavy":  # Student t, 3 degrees of freedom
        e = scale * rng.standard_t(3, (searches, seeds))
    else:  # sensitivity on 12 positives of each of two runs: a discrete proportion
        e = (rng.binomial(12, 0.5, (searches, seeds)) - rng.binomial(12, 0.5, (searches, seeds))) / 12 * 4 * scale
    d = (u + v + e).ravel()
    return d, np.repeat(np.arange(searches), seeds), np.tile(np.arange(seeds), searches)


SCENARIOS = [  # (search SD, shared seed SD, noise, noise SD)
    (0.0, 0.0, "normal", 1.0),
    (1.0, 0.0, "normal", 1.0),   # the searches chose differently
    (0.0, 1.0, "normal", 1.0),   # the seeds move every search alike
    (0.0, 1.0, "normal", 0.0),   # every search chose the same configs: identical rows
    (1.0, 0.5, "heavy", 1.0),
    (0.5, 0.5, "discrete", 1.0),
]


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # scipy's, on the identical search means
@pytest.mark.parametrize("tau, shared, noise, scale", SCENARIOS)
def test_the_search_seed_test_keeps_its_false_positive_rate(tau, shared, noise, scale):
    rng = np.random.default_rng(7)
    sims = 1000
    ours = pooled = search_means = 0
    for _ in range(sims):
        d, searches, seeds = simulate_aa(rng, 3, 8, tau, shared, noise, scale)
        ours += search_seed_test(d, searches, seeds).p_value < ALPHA
        pooled += stats.wilcoxon(d).pvalue < ALPHA
        search_means += stats.ttest_1samp(d.reshape(3, 8).mean(1), 0).pvalue < ALPHA
    rate, margin = ours / sims, 3 * np.sqrt(ALPHA * (1 - ALPHA) / sims)  # 3 Monte Carlo SEs
    assert rate <= ALPHA + margin, (tau, shared, noise, rate)
    # the simulation has teeth: all pairs as independent, or the search means alone, find differences
    # that are not there when the searches (resp. the seeds) add a variance of their own
    if tau >= 1:
        assert pooled / sims > 3 * ALPHA, pooled / sims
    if shared >= 1:
        assert search_means / sims > 2 * ALPHA, search_means / sims


def test_the_search_seed_test_finds_an_effect_the_searches_agree_on():
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(300):
        d, searches, seeds = simulate_aa(rng, 3, 8, 0.3, 0.3, "normal")
        found += search_seed_test(d + 1.5, searches, seeds).p_value < ALPHA
    assert found / 300 > 0.8


def test_its_special_cases_are_scipys_t_tests():
    rng = np.random.default_rng(0)
    # one seed per search: the one-sample t-test of the search means (K - 1 df)
    d = rng.normal(0.5, 1, 4)
    test = search_seed_test(d, np.array([4, 9, 2, 7]), np.zeros(4, int))
    reference = stats.ttest_1samp(d, 0)
    assert test.p_value == pytest.approx(reference.pvalue) and test.mean_diff == pytest.approx(d.mean())
    assert test.ci == pytest.approx(tuple(reference.confidence_interval(0.95)))
    assert "Satterthwaite df 3.0" in test.method and np.isnan(test.search_share)
    # identical searches (the same configs chosen): the paired t-test over the seeds (n - 1 df)
    row = rng.normal(0.3, 1, 6)
    test = search_seed_test(np.tile(row, 3), np.repeat([0, 1, 2], 6), np.tile(np.arange(6), 3))
    assert test.p_value == pytest.approx(stats.ttest_1samp(row, 0).pvalue)
    assert test.search_share == pytest.approx(0, abs=1e-12)
    assert "Satterthwaite df 5.0" in test.method
    # no variance at all: the exact Wilcoxon of the per-seed means; nothing: p = 1
    test = search_seed_test(np.full(12, 0.25), np.repeat([0, 1], 6), np.tile(np.arange(6), 2), 1e-9)
    assert test.p_value == pytest.approx(2 / 2**6) and test.method.startswith("Wilcoxon of the 6 per-seed means")
    assert search_seed_test(np.zeros(6), np.repeat([0, 1], 3), np.tile([0, 1, 2], 2), 1e-9).p_value == 1.0
    # a seed missing from one search is left out of the grid, and counted
    test = search_seed_test(np.arange(5.0), np.array([0, 0, 0, 1, 1]), np.array([1, 2, 3, 1, 2]))
    assert test.seeds_left_out == 1 and test.mean_diff == pytest.approx(np.mean([0, 1, 3, 4]))


def test_the_variance_components_are_the_anova_estimates():
    # a search x seed grid built from known effects: search +-1, seed pattern, no interaction
    searches, seeds = np.repeat([0, 1], 4), np.tile(np.arange(4), 2)
    d = np.array([1, 1, 1, 1, -1, -1, -1, -1], float) + np.tile([0.5, -0.5, 0.25, -0.25], 2)
    test = search_seed_test(d, searches, seeds)
    # MS_search = 4 * (1 + 1) / 1 = 8, MS_error = 0 -> sigma_u^2 = 8 / 4 = 2; MS_seed = 2 * 0.625 / 3
    seed_var = (2 * 0.625 / 3) / 2
    assert test.search_share == pytest.approx(2 / (2 + seed_var))


def nested_table(shifts: dict[int, float], seeds: int = 10, seed: int = 0) -> pd.DataFrame:
    """(search_seed, seed) x strategies: ``new`` is ``control`` plus the search's shift and noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, shift in shifts.items():
        for s in range(seeds):
            base = 0.5 + rng.normal(0, 0.05)
            rows.append({"search_seed": k, "seed": 100 + s, "control": base,
                         "new": base + shift + rng.normal(0, 0.02), "other": base + rng.normal(0, 0.02)})
    return pd.DataFrame(rows).set_index(["search_seed", "seed"])


def test_compare_reports_each_searchs_own_verdict_and_the_robustness_count():
    table = nested_table({0: 0.20, 1: 0.15, 2: 0.0})
    rep = compare(table, "test/sensitivity", "control")
    new = next(c for c in rep.comparisons if c.strategy == "new")
    assert new.searches == 3 and new.n == 30 and new.method == "search x seed t-test, 3 x 10, Satterthwaite df 2.0"
    assert new.search_standings == ["search seed 0: better", "search seed 1: better", "search seed 2: not significant"]
    # two searches alone find it better, one does not; the nested test cannot rule the third out
    assert not new.significant and new.search_agree == 1
    assert "1 of 3 searches alone give the same verdict (not significant)" in new.verdict
    assert "by a mean 11.7 points" in new.verdict and new.search_share > 0.5
    assert rep.friedman["n"] == 3 and rep.friedman["blocks"].startswith("searches")
    agreeing = compare(nested_table({0: 0.2, 1: 0.21, 2: 0.19}), "test/sensitivity", "control")
    new = next(c for c in agreeing.comparisons if c.strategy == "new")
    assert new.significant and new.search_agree == 3 and new.standing == "better"
    assert "3 of 3 searches alone give the same verdict (better)" in new.verdict
    one_search = compare(nested_table({5: 0.2}).droplevel("search_seed"), "test/sensitivity", "control")
    assert one_search.comparisons[0].searches == 1 and "median" in one_search.comparisons[0].verdict


SPEC = """
name: searches
data: {source: synthetic, synthetic: {n: 200}, load_size: 20, image_size: 16}
training: {epochs: 1, batch_size: 32}
strategies: {control: control, upsample: upsample}
search: {space: {lr: {loguniform: [1.0e-3, 1.0e-2]}}, samples_per_strategy: 1, seed: 1}
tracking: {uri: "sqlite:///mlflow.db"}
"""


@pytest.mark.parametrize("seeds, message", [
    ("[0, 2]", "repeats.search_seeds: [0, 2] must include search.seed (1)"),
    ("[1, 1]", "repeats.search_seeds: [1, 1] repeats a seed"),
    ("[]", "repeats.search_seeds"),
])
def test_search_seeds_are_checked(tmp_path, seeds, message):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC + f"repeats: {{search_seeds: {seeds}}}\n")
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(path)
    path.write_text(SPEC)
    spec = load_spec(path)
    assert spec.search_seeds == [1] and spec.search_phase(1) == "search"
    assert spec.search_phase(3) == "search-seed3" and spec.with_search_seed(3).search.seed == 3


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_a_study_with_two_search_seeds(ray_local, tiny_spec_file):
    path = tiny_spec_file(name="twice", samples=2, extra="repeats: {seeds: 3, first_seed: 10, search_seeds: [0, 5]}\n")
    spec = load_spec(path, {"scheduler": {"type": "fifo"}, "training": {"epochs": 1},
                            "repeats": {"metrics": ["test/sensitivity", "test/balanced_accuracy"]}})
    summaries = run_search(spec)
    assert list(summaries) == [0, 5] and [s["search_seed"] for s in summaries.values()] == [0, 5]
    assert search_summary_file(spec).is_file() and search_summary_file(spec, "search-seed5").is_file()
    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name("twice")
    for k, phase in ((0, "search"), (5, "search-seed5")):
        runs = client.search_runs([exp.experiment_id], f"tags.phase = '{phase}'")
        trials = [r for r in runs if "trial_id" in r.data.tags]
        assert len(trials) == 4 and {r.data.tags["search_seed"] for r in runs} == {str(k)}
        assert {r.data.params["seed"] for r in trials} == {str(k)}  # the search trials' seed is the search seed
        for strategy in spec.strategies:  # each search its own Optuna study, every trial finished
            import optuna

            study = optuna.load_study(study_name=optuna_study_name(spec, strategy, phase), storage=optuna_storage(spec))
            assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
    # the two searches sampled differently (their samplers have their own seeds)
    lrs = [{s: p["best"]["searched"]["lr"] for s, p in summary["strategies"].items()} for summary in summaries.values()]
    assert lrs[0] != lrs[1]
    assert run_search(spec, resume=True).keys() == {0, 5}  # a finished study: summarised, nothing re-run
    assert len([r for r in client.search_runs([exp.experiment_id], "tags.phase = 'search-seed5'")
                if "trial_id" in r.data.tags]) == 4

    run_repeats(spec)
    table = repeat_table(spec)
    assert len(table) == 2 * 2 * 3 and set(zip(table.search_seed, table.seed)) == {(k, s) for k in (0, 5)
                                                                                    for s in (10, 11, 12)}
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], "tags.phase = 'repeat'")}
    for _, row in table.iterrows():  # each run repeats the best config of its own search
        run = runs[row.run_id]
        best = summaries[row.search_seed]["strategies"][row.strategy]["best"]["searched"]["lr"]
        assert float(run.data.params["lr"]) == pytest.approx(best) and run.data.tags["search_seed"] == str(row.search_seed)
        assert run.info.run_name == f"{row.strategy}-search{row.search_seed}-seed{row.seed}"
    summary = run_compare(spec)
    assert summary["search_seeds"] == [0, 5] and summary["seeds"] == 3
    (c,) = summary["comparisons"]["test/sensitivity"]
    assert c["searches"] == 2 and c["n"] == 6
    # one epoch on tiny data: the differences may all be equal (then the exact Wilcoxon of the seed means)
    assert c["method"].startswith(("search x seed t-test, 2 x 3, Satterthwaite df ", "Wilcoxon of the 3 per-seed means"))
    assert len(c["search_standings"]) == 2 and "searches alone give the same verdict" in c["verdict"]
    page = open(summary["report_html"]).read()
    assert "<h2>Search variance</h2>" in page and "<th>search seed 5</th>" in page and "<th>spread</th>" in page
    assert "<th>searches agreeing</th>" in page

"""Verdicts over several searches (``repeats.search_seeds``): the nested test keeps its
false-positive rate at alpha when the searches themselves differ (search-level noise) as well as
the seeds, where a test of all pairs as independent does not; its figures are scipy's and
statsmodels'; each search's own verdict and the robustness count; the spec's checks; and a real
study with two search seeds (separate searches, repeats of each, resumable, compared)."""
import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from mlflow import MlflowClient
from scipy import stats

from study.errors import SpecError
from study.layout import optuna_storage, optuna_study_name, search_summary_file
from study.repeats import run_repeats
from study.report import run_compare
from study.results import repeat_table
from study.search import run_search
from study.spec import load_spec
from study.stats import compare, nested_test

ALPHA = 0.05


def simulate_aa(rng, searches: int, seeds: int, tau: float, noise: str) -> tuple[np.ndarray, np.ndarray]:
    """Paired differences of two equally good strategies: each search chooses each strategy's config
    (its quality a normal draw, SD ``tau``), each seed adds noise of the kind named (SD about 1)."""
    u = rng.normal(0, tau, (searches, 2))
    if noise == "normal":
        e = rng.normal(0, 1, (searches, seeds, 2))
    elif noise == "heavy":  # Student t, 3 degrees of freedom
        e = rng.standard_t(3, (searches, seeds, 2))
    else:  # sensitivity on 12 positives: a discrete proportion
        e = rng.binomial(12, 0.5, (searches, seeds, 2)) / 12 * 4
    values = u[:, None, :] + e
    return (values[..., 0] - values[..., 1]).ravel(), np.repeat(np.arange(searches), seeds)


@pytest.mark.parametrize("tau, noise", [(0.0, "normal"), (1.0, "normal"), (3.0, "heavy"), (1.0, "discrete")])
def test_the_nested_test_keeps_its_false_positive_rate_under_search_and_seed_noise(tau, noise):
    rng = np.random.default_rng(7)
    sims = 1000
    nested = pooled = 0
    for _ in range(sims):
        d, blocks = simulate_aa(rng, 3, 10, tau, noise)
        nested += nested_test(d, blocks).p_value < ALPHA
        pooled += stats.wilcoxon(d).pvalue < ALPHA
    rate, margin = nested / sims, 3 * np.sqrt(ALPHA * (1 - ALPHA) / sims)  # 3 Monte Carlo SEs
    assert rate <= ALPHA + margin, (tau, noise, rate)
    if tau >= 1:  # the simulation has teeth: all pairs as independent finds differences that are not there
        assert pooled / sims > 3 * ALPHA, pooled / sims


def test_the_nested_test_finds_an_effect_the_searches_agree_on():
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(300):
        d, blocks = simulate_aa(rng, 3, 10, 0.3, "normal")
        found += nested_test(d + 3.0, blocks).p_value < ALPHA
    assert found / 300 > 0.8


def test_nested_figures_are_scipys_and_statsmodels():
    rng = np.random.default_rng(0)
    blocks = np.repeat([4, 9, 2, 7], 12)
    d = rng.normal(0.2, 1, 48) + np.repeat(rng.normal(0, 0.8, 4), 12)
    test = nested_test(d, blocks)
    means = [d[blocks == k].mean() for k in (4, 9, 2, 7)]
    reference = stats.ttest_1samp(means, 0)
    assert test.p_value == pytest.approx(reference.pvalue) and test.mean_diff == pytest.approx(np.mean(means))
    assert test.ci == pytest.approx(tuple(reference.confidence_interval(0.95)))
    assert test.method == "t-test over 4 search means (df 3)"
    # the between-search share: the balanced random-intercept model's REML variance components
    fit = smf.mixedlm("d ~ 1", pd.DataFrame({"d": d, "search": blocks}), groups="search").fit(reml=True)
    tau2, sigma2 = float(fit.cov_re.iloc[0, 0]), float(fit.scale)
    assert test.search_share == pytest.approx(tau2 / (tau2 + sigma2), rel=1e-3)
    assert nested_test(np.zeros(6), np.repeat([0, 1], 3)).p_value == 1.0


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
    assert new.searches == 3 and new.n == 30 and new.method == "t-test over 3 search means (df 2)"
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
    assert c["searches"] == 2 and c["n"] == 6 and c["method"] == "t-test over 2 search means (df 1)"
    assert len(c["search_standings"]) == 2 and "searches alone give the same verdict" in c["verdict"]
    page = open(summary["report_html"]).read()
    assert "<h2>Search variance</h2>" in page and "<th>search seed 5</th>" in page and "<th>spread</th>" in page
    assert "<th>searches agreeing</th>" in page

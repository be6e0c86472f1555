"""Helpers shared by the study benchmarks: run a spec's search in a scratch folder, read its trials."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from study.layout import tune_storage
from study.search import run_search
from study.spec import StudySpec, load_spec


def scratch_spec(path: str, **overrides) -> StudySpec:
    """The spec with tracking and results redirected into a new temporary folder, and one search
    (its first search seed: the benchmarks measure a search)."""
    root = Path(tempfile.mkdtemp(prefix="bench-study-"))
    first = load_spec(path).search_seeds[0]
    return load_spec(path, {"tracking": {"uri": f"sqlite:///{root}/mlflow.db"},
                            "storage_path": str(root / "results"),
                            "repeats": {"search_seeds": [first]}, **overrides})


def timed_search(spec: StudySpec) -> tuple[dict, float]:
    start = time.perf_counter()
    (summary,) = run_search(spec).values()
    return summary, time.perf_counter() - start


def trial_results(spec: StudySpec) -> list[list[dict]]:
    """Every trial's reported results (Tune's result.json rows), per trial."""
    trials = []
    for f in sorted(Path(tune_storage(spec)).glob("*/*/result.json")):
        trials.append([json.loads(line) for line in f.read_text().splitlines() if line.strip()])
    return trials

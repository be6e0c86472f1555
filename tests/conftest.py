"""Shared fixtures: a private data cache per test session and tiny trial configs."""
from __future__ import annotations

import copy

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CXR_STUDY_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


TINY = {
    "seed": 0,
    "model": "simple_cnn",
    "epochs": 2,
    "batch_size": 32,
    "lr": 1e-3,
    "num_threads": 1,
    "data": {"source": "synthetic", "synthetic": {"n": 240, "seed": 3,
                                                  "shares": {"covid": 0.2, "normal": 0.5, "pneumonia": 0.3}},
             "load_size": 20, "image_size": 16},
}


@pytest.fixture
def tiny_config():
    """A trial config that trains in about a second on one CPU thread."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (2 CPUs, small object store), shut down at the end."""
    import os

    from study.launch import RAY_ENV

    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 << 20,
             logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


TINY_SPEC = """
name: {name}
data:
  source: synthetic
  synthetic: {{n: 300, seed: 3, shares: {{covid: 0.2, normal: 0.5, pneumonia: 0.3}}}}
  load_size: 20
  image_size: 16
model: simple_cnn
training: {{epochs: 3, batch_size: 32}}
strategies:
  control: control
  upsample: upsample
search:
  space:
    lr: {{loguniform: [1.0e-4, 3.0e-2]}}
  samples_per_strategy: {samples}
  max_concurrent: 2
scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
tracking: {{uri: "sqlite:///{root}/mlflow.db"}}
failure: {{max_failures: 0}}
storage_path: {root}/results
"""


@pytest.fixture
def tiny_spec_file(tmp_path):
    """Write a tiny two-strategy study spec into a temp folder; returns a factory."""

    def make(name="tiny", samples=3, extra=""):
        path = tmp_path / f"{name}.yaml"
        path.write_text(TINY_SPEC.format(name=name, samples=samples, root=tmp_path) + extra)
        return path

    return make

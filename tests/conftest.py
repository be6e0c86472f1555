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

"""Shared fixtures: a tiny scenes dataset and a private cache folder for every test."""

import pytest
import torch

from ssl_teach.data import load_dataset


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own empty checkpoint cache (tests never share trained weights)."""
    monkeypatch.setenv("SSL_TEACH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tiny_scenes():
    """A small scenes dataset at 32x32: enough to run every stage in seconds."""
    return load_dataset("scenes", size=32, n_unlabeled=256, n_train=200, n_test=100, seed=3)


@pytest.fixture
def images():
    """A random float batch (N, C, H, W) in [0, 1]."""
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))

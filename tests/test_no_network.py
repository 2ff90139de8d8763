"""The default path never opens a network connection: sockets are blocked while the scenes
are rendered, a task and its baselines are trained and everything is probed."""

import socket

import pytest

from ssl_teach import finetune
from ssl_teach.data import MissingDataError, load_dataset
from ssl_teach.experiment import run
from ssl_teach.profiles import Profile
from ssl_teach.train import TrainConfig


class NetworkUsed(AssertionError):
    """Something tried to reach the network."""


@pytest.fixture
def no_network(monkeypatch):
    """Every way of opening a connection or resolving a name raises :class:`NetworkUsed`."""

    def refuse(*args, **kwargs):
        raise NetworkUsed(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)


def test_the_guard_really_blocks_connections(no_network):
    with pytest.raises(NetworkUsed):
        socket.create_connection(("example.org", 80), timeout=1)
    with socket.socket() as s, pytest.raises(NetworkUsed):
        s.connect(("127.0.0.1", 9))


def test_the_default_path_runs_offline(no_network, monkeypatch):
    # fine-tuning too, with a recipe sized for the tiny data (the quick one trains for minutes)
    monkeypatch.setitem(finetune.RECIPES, "quick",
                        finetune.FinetuneConfig(steps=4, batch_size=16, eval_every=2))
    tiny = Profile(name="quick", image_size=32, n_unlabeled=128, n_train=100, n_test=50,
                   train=TrainConfig(budget_samples=256, batch_size=64, width=8, depth=3))
    res = run("rotation", profile=tiny, progress=False)
    assert res["dataset"] == "scenes"
    assert res["probe"]["linear"]["supervised"]["block3"] > 0.1  # it really trained and probed


def test_missing_real_data_without_download_stays_offline(no_network, tmp_path):
    for name in ("cifar10", "stl10", "fashion-mnist"):
        with pytest.raises(MissingDataError, match="--download"):
            load_dataset(name, size=32, data_dir=tmp_path, n_unlabeled=None, n_train=None,
                         n_test=None)

"""The probe: separable features give ~100%, noise gives chance, the backbone stays frozen."""

import torch

from ssl_teach.models import build_backbone
from ssl_teach.probe import (
    extract_features, knn_accuracy, linear_probe, pooled_grid, probe, split_validation,
)


def separable(n_per_class=60, classes=5, dim=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 5
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = centres[y] + 0.3 * torch.randn(len(y), dim, generator=g)
    return x, y


def test_linear_probe_solves_separable_features():
    x, y = separable(seed=0)
    xt, yt = separable(seed=1)
    xt = xt - separable(seed=1)[0] + x  # same centres as training
    res = linear_probe(x, y, xt, yt, num_classes=5)
    assert res["accuracy"] > 0.98


def test_linear_probe_on_noise_is_at_chance():
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(500, 50, generator=g), torch.randn(500, 50, generator=g)
    y, yt = torch.randint(0, 5, (500,), generator=g), torch.randint(0, 5, (500,), generator=g)
    acc = linear_probe(x, y, xt, yt, num_classes=5)["accuracy"]
    assert abs(acc - 0.2) < 0.07


def test_knn_solves_separable_and_fails_on_noise():
    x, y = separable(seed=0)
    assert knn_accuracy(x, y, x, y, num_classes=5) > 0.98
    g = torch.Generator().manual_seed(0)
    noise, labels = torch.randn(400, 30, generator=g), torch.randint(0, 4, (400,), generator=g)
    test, test_y = torch.randn(400, 30, generator=g), torch.randint(0, 4, (400,), generator=g)
    assert abs(knn_accuracy(noise, labels, test, test_y, num_classes=4) - 0.25) < 0.08


def test_validation_split_is_disjoint_and_seeded():
    tr, va = split_validation(100, seed=1)
    assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == 100
    assert torch.equal(va, split_validation(100, seed=1)[1])


def test_features_are_pooled_per_block_and_batchnorm_does_not_move():
    bb = build_backbone(width=8, depth=3)
    bb.train()
    stats = [m.running_mean.clone() for m in bb.modules() if hasattr(m, "running_mean")]
    images = torch.rand(10, 3, 32, 32)
    feats = extract_features(bb, images, batch_size=4)
    assert list(feats) == ["block1", "block2", "block3"]
    assert all(f.shape[0] == 10 for f in feats.values())
    after = [m.running_mean for m in bb.modules() if hasattr(m, "running_mean")]
    assert all(torch.equal(a, b) for a, b in zip(stats, after))
    assert bb.training  # the caller's mode is restored
    # eval mode: a sample's features do not depend on the rest of the batch
    alone = extract_features(bb, images[:1])
    assert torch.allclose(alone["block3"][0], feats["block3"][0], atol=1e-5)


def test_pooled_grid_keeps_features_bounded():
    assert pooled_grid(24, 32) == 6 and pooled_grid(192, 4) == 2 and pooled_grid(4096, 2) == 1
    assert pooled_grid(8, 3, max_features=1024) == 3  # never larger than the map


def test_probe_runs_on_every_block(tiny_scenes):
    res = probe(build_backbone(width=8, depth=3), tiny_scenes)
    assert set(res.linear) == set(res.knn) == {"block1", "block2", "block3"}
    assert all(0.0 <= v <= 1.0 for v in [*res.linear.values(), *res.knn.values()])

"""The probe: separable features give ~100%, noise gives chance, the backbone stays frozen."""

import torch

import dataclasses

import pytest

from ssl_teach.models import build_backbone
from ssl_teach.probe import (
    L2_GRID, ProbeResult, extract_features, format_table, knn_accuracy, labelled_subset,
    linear_probe, pooled_grid, probe, probe_features, select_probe, split_validation,
    validation_split,
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


def shuffled(labels, seed=0):
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def test_validation_split_is_stratified_capped_and_seeded():
    labels = torch.arange(200) % 5  # 40 per class
    tr, va = validation_split(labels, share=0.25, max_per_class=50, seed=0)
    assert torch.equal(labels[va].bincount(minlength=5), torch.full((5,), 10))
    assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == 200
    assert torch.equal(va, validation_split(labels, seed=0)[1])
    assert not torch.equal(va, validation_split(labels, seed=1)[1])
    _, capped = validation_split(labels, share=0.5, max_per_class=3)
    assert torch.equal(labels[capped].bincount(minlength=5), torch.full((5,), 3))
    _, one = validation_split(torch.arange(20) % 5)  # 4 per class: one of each held out
    assert len(one) == 5


def test_with_too_few_labels_per_class_nothing_is_held_out():
    labels = torch.arange(15) % 5  # 3 per class
    tr, va = validation_split(labels)
    assert len(va) == 0 and torch.equal(tr, torch.arange(15))


def test_the_best_block_is_chosen_on_validation_not_on_test():
    r = ProbeResult(linear={"block1": 0.9, "block2": 0.5}, knn={"block1": 0.8, "block2": 0.4},
                    l2={"block1": 0.1, "block2": 0.1}, val={"block1": 0.3, "block2": 0.6})
    assert r.best_block == "block2" and r.best_linear == 0.5
    table = format_table({"m": r})
    assert table.splitlines()[-1].endswith("50.0%  block2")
    assert format_table({"m": r}, metric="knn").splitlines()[-1].endswith("40.0%  block2")


def two_blocks(seed=0, n=300, classes=5):
    """Features of two "blocks": one separable by class, one noise."""
    x, y = separable(n_per_class=n // classes, classes=classes, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    return {"block1": torch.randn(len(y), 20, generator=g), "block2": x}, y


def test_changing_the_test_labels_changes_no_choice_of_the_probe():
    train_f, y = two_blocks(seed=0)
    test_f, yt = two_blocks(seed=1)
    test_f["block2"] = test_f["block2"] - separable(seed=1)[0] + separable(seed=0)[0]
    a = probe_features(train_f, y, test_f, yt, num_classes=5)
    b = probe_features(train_f, y, test_f, shuffled(yt), num_classes=5)
    assert a.best_block == b.best_block == "block2"
    assert a.l2 == b.l2 and a.val == b.val
    assert a.linear != b.linear  # the test labels change only what is reported


def test_subset_probe_chooses_block_and_l2_on_its_own_validation_part():
    train_f, y = two_blocks(seed=0, n=40)  # 8 labels per class
    test_f, yt = two_blocks(seed=1)
    test_f["block2"] = test_f["block2"] - separable(seed=1)[0] + separable(seed=0)[0]
    a = select_probe(train_f, y, test_f, yt, num_classes=5)
    b = select_probe(train_f, y, test_f, shuffled(yt), num_classes=5)
    assert a["block"] == b["block"] == "block2" and a["l2"] == b["l2"] and a["val"] == b["val"]
    assert a["accuracy"] > 0.9 and a["val"] == 1.0
    assert b["accuracy"] < 0.5


def test_subset_probe_with_too_few_labels_follows_the_fixed_rule():
    train_f, y = two_blocks(seed=0, n=10)  # 2 labels per class: nothing to validate on
    test_f, yt = two_blocks(seed=1)
    res = select_probe(train_f, y, test_f, yt, num_classes=5)
    assert res["block"] == "block2" and res["l2"] == max(L2_GRID) and res["val"] is None
    first = {"a": train_f["block2"], "b": train_f["block1"]}
    assert select_probe(first, y, {"a": test_f["block2"], "b": test_f["block1"]}, yt,
                        num_classes=5)["block"] == "b"  # the last block, whatever it holds


def test_linear_probe_reports_the_validation_accuracy_of_its_choice():
    x, y = separable(seed=0)
    res = linear_probe(x, y, x, y, num_classes=5)
    assert res["val_accuracy"] == res["val"][res["l2"]] == max(res["val"].values())


def test_probe_results_round_trip_through_json(tiny_scenes):
    import json

    res = probe(build_backbone(width=8, depth=3), tiny_scenes, blocks=["block2", "block3"])
    again = ProbeResult(**json.loads(json.dumps(dataclasses.asdict(res))))
    assert again == res and again.best_block in ("block2", "block3")
    assert set(res.val) == {"block2", "block3"}


def test_labelled_subsets_reject_bad_sizes():
    labels = torch.arange(40) % 4
    with pytest.raises(ValueError, match="positive int or 'all'"):
        labelled_subset(labels, 0, seed=0)
    with pytest.raises(ValueError, match="only 10 labelled images"):
        labelled_subset(labels, 11, seed=0)

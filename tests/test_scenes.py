"""The embedded scenes dataset: deterministic, balanced, fast, cached."""

import pytest
import torch

from ssl_teach.data import load_dataset, to_float
from ssl_teach.data.scenes import CLASS_NAMES, SceneConfig, balanced_labels, render_scenes


def test_at_least_ten_upright_object_classes():
    assert len(CLASS_NAMES) >= 10
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)


def test_same_seed_same_images_different_seed_different_images():
    labels = torch.arange(20) % 10
    a = render_scenes(labels, seed=5)
    b = render_scenes(labels, seed=5)
    c = render_scenes(labels, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_rgb_uint8_at_every_supported_size():
    labels = torch.arange(10)
    for size in (32, 64, 96):
        im = render_scenes(labels, seed=0, config=SceneConfig(size=size))
        assert im.shape == (10, 3, size, size) and im.dtype == torch.uint8
        assert im.float().std() > 10  # not blank


def test_balanced_labels_cover_every_class_equally():
    counts = balanced_labels(1000, seed=1).bincount()
    assert torch.equal(counts, torch.full((10,), 100))


def test_dataset_splits_are_distinct_and_labelled(tiny_scenes):
    ds = tiny_scenes
    assert ds.unlabeled.shape == (256, 3, 32, 32)
    assert len(ds.train_images) == len(ds.train_labels) == 200
    assert len(ds.test_images) == len(ds.test_labels) == 100
    assert not torch.equal(ds.train_images[:10], ds.test_images[:10])
    assert ds.num_classes == 10 and ds.channels == 3 and ds.image_size == 32


def test_dataset_is_cached_and_reloaded_identically(private_cache):
    a = load_dataset("scenes", size=32, n_unlabeled=30, n_train=20, n_test=10, seed=1)
    files = list((private_cache / "data").glob("scenes-*.pt"))
    assert len(files) == 1
    b = load_dataset("scenes", size=32, n_unlabeled=30, n_train=20, n_test=10, seed=1)
    assert torch.equal(a.unlabeled, b.unlabeled) and torch.equal(a.test_labels, b.test_labels)


def test_corrupt_dataset_cache_is_rendered_again(private_cache):
    a = load_dataset("scenes", size=32, n_unlabeled=30, n_train=20, n_test=10, seed=1)
    path = next((private_cache / "data").glob("scenes-*.pt"))
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable"):
        b = load_dataset("scenes", size=32, n_unlabeled=30, n_train=20, n_test=10, seed=1)
    assert torch.equal(a.unlabeled, b.unlabeled)


def test_cues_can_be_switched_off():
    labels = torch.arange(10)
    plain = render_scenes(labels, seed=0, config=SceneConfig(sky_and_ground=False, clutter=False))
    full = render_scenes(labels, seed=0)
    assert not torch.equal(plain, full)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="n_train must be a positive int"):
        load_dataset("scenes", n_train=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        render_scenes(torch.tensor([10]), seed=0)
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        SceneConfig(size=8)


def test_to_float_maps_uint8_to_unit_range():
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert torch.equal(to_float(x), torch.tensor([0.0, 1.0]))

"""Every registered pretext task on grayscale and RGB images, from its smallest size upwards.

Real datasets come in one channel (MNIST, Fashion-MNIST, grayscale folders) or three, and at
28 to 96 pixels and more; each task declares ``min_image_size`` and must work at every size
from there, through the same path the trainer and the probe take.
"""

import pytest
import torch

from ssl_teach.data import Dataset
from ssl_teach.experiment import check_image_size, pretrain
from ssl_teach.pretext import TASKS, get_task
from ssl_teach.probe import extract_features
from ssl_teach.profiles import Profile
from ssl_teach.train import TrainConfig, evaluation_data, predict, train, training_data

TINY = TrainConfig(budget_samples=32, batch_size=16, width=4, depth=4)
SMALL_OPTIONS = {"exemplar": {"num_classes": 16}}  # one surrogate class per seed image
NEEDS_COLOUR = {"colorization"}  # predicts colours from lightness: RGB images only
PIXEL_TARGETS = {"inpainting"}  # regresses pixels instead of classifying


def small_task(name: str):
    """The task with the options a 24-image dataset allows."""
    return get_task(name, **SMALL_OPTIONS.get(name, {}))


def fabricated(channels: int, size: int, *, n: int = 24) -> Dataset:
    """Smooth random images (blurred noise, so they have edges and flat parts) with labels."""
    g = torch.Generator().manual_seed(channels * 1000 + size)
    noise = torch.rand(n, channels, size // 4 + 2, size // 4 + 2, generator=g)
    smooth = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear")
    images = (smooth * 255).round().to(torch.uint8)
    labels = torch.arange(n) % 2
    return Dataset(name="fabricated", unlabeled=images, train_images=images, train_labels=labels,
                   test_images=images[:8], test_labels=labels[:8], class_names=("a", "b"),
                   spec={"name": "fabricated", "channels": channels, "size": size, "n": n})


def sizes_for(task) -> list[int]:
    """The task's smallest size, Fashion-MNIST's 28, the quick profile's 64, STL-10's 96 and
    an odd size, where the task can work at all."""
    smallest = task.min_image_size
    return sorted({smallest, smallest + 3, max(smallest, 28), max(smallest, 64), 96})


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_declares_a_workable_smallest_size(name):
    task = small_task(name)
    assert isinstance(task.min_image_size, int) and 16 <= task.min_image_size <= 64, (
        "every task must run on the quick profile's 64x64 images")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_trains_predicts_and_probes_at_every_size(name, channels):
    task = small_task(name)
    if channels == 1 and name in NEEDS_COLOUR:  # refused before any training, saying why
        with pytest.raises(ValueError, match="needs RGB images"):
            train(task, fabricated(1, 64), TINY, progress=False, cache=False)
        return
    for size in sizes_for(task):
        data = fabricated(channels, size)
        images, labels = training_data(task, data)
        batch = images[:4].float() / 255
        g = torch.Generator().manual_seed(0)
        if labels is None:
            inputs, targets = task.make_batch(batch, generator=g)
        else:
            inputs, targets = task.make_batch(batch, generator=g, labels=labels[:4])
        assert inputs.dtype == torch.float32 and len(inputs) == len(targets), (name, size)
        if name in PIXEL_TARGETS:  # the image itself and a code per pixel of what was hidden
            assert targets.dtype == torch.float32 and targets.shape[-2:] == (size, size)
        else:
            assert targets.dtype == torch.int64 and 0 <= targets.min() <= targets.max() < (
                task.num_classes)
        # (N, C, H, W), or (N, tiles, C, H, W) for the siamese tasks
        # (the tasks whose backbone reads fewer channels say so: colorization reads lightness)
        assert inputs.shape[-3] == getattr(task, "in_channels", channels), (
            name, size, tuple(inputs.shape))

        trained = train(task, data, TINY, progress=False, cache=False)
        held_out, held_labels = evaluation_data(task, data)  # as pretext_accuracy does
        logits, _, _ = predict(trained, held_out[:4], None if held_labels is None else
                               held_labels[:4])
        assert torch.isfinite(logits).all(), (name, size)
        if name in PIXEL_TARGETS:  # a painting of the whole image
            assert logits.shape == (4, channels, size, size), (name, size)
        else:
            assert logits.shape[1] == task.num_classes, (name, size)
        feats = extract_features(trained.backbone, data.test_images[:4],
                                 prepare=task.probe_inputs)
        assert len(feats) == 4 and all(f.shape[0] == 4 for f in feats.values()), (name, size)


@pytest.mark.parametrize("name", list(TASKS))
def test_a_size_below_the_task_minimum_is_a_clear_error(name):
    task = small_task(name)
    small = fabricated(3, task.min_image_size - 1)
    with pytest.raises(ValueError, match=f"needs images of at least {task.min_image_size}"):
        check_image_size(task, small)
    profile = Profile(name="tiny", image_size=small.image_size, n_unlabeled=24, n_train=24,
                      n_test=8, train=TINY)
    with pytest.raises(ValueError, match="load it at a larger size"):
        pretrain(task, small, profile, progress=False, cache=False)

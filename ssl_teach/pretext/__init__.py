"""Pretext tasks: one module per task, all with the same small surface.

Each task object has ``name``, ``class_names``, ``num_classes``, ``chance``,
``samples_per_image`` (network inputs made from one image), ``options()`` (its settings, part
of the checkpoint key), ``make_batch(images, generator=...)`` -> ``(inputs, targets)`` on the
images' device (``images`` uint8 as stored, or float in [0, 1]; the inputs are float),
``build_model(backbone)`` -> a module from inputs to logits, and ``probe_inputs(images)`` (how
the trained backbone is applied to whole images in the probe). Every task is a frozen dataclass
whose fields are its settings and derives from :class:`~ssl_teach.pretext.base.Task`, which
gives ``chance`` and ``options()``. Optional parts, for tasks that need them: a task's
``in_channels`` (the backbone reads fewer channels than the images have: colorization sees
lightness only), its ``fit_to_data(model, images, seed=...)`` (called once before training, for
settings learned from the training images), an ``image_size`` argument of its ``build_model``
(a decoder back to the image's size: context encoders), and the model's
``pretext_loss(logits, targets)`` (used instead of the cross-entropy) and
``pretext_hits(logits, targets)`` (the pretext accuracy, instead of how often the arg-max is the
target: inpainting counts the hidden pixels painted within a tolerance).
"""

from __future__ import annotations

import importlib

TASKS = {
    "rotation": ("rotation", "RotationTask"),
    "exemplar": ("exemplar", "ExemplarTask"),
    "jigsaw": ("jigsaw", "JigsawTask"),
    "relative_patch": ("relative_patch", "RelativePatchTask"),
    "simclr": ("simclr", "SimCLRTask"),
    "colorization": ("colorization", "ColorizationTask"),
    "inpainting": ("inpainting", "InpaintingTask"),
}
"""Every pretext task by the name the CLI and the notebooks use: (module, class). The first
four are the course's classic tasks (notebooks 01-04); the others are where the field went
next: ``simclr`` (contrastive learning, notebook 06), ``colorization`` (predicting colours from
lightness) and ``inpainting`` (context encoders: painting a hidden region), the two of notebook
07 (predicting pixels)."""


def task_class(name: str):
    """The class of the pretext task called ``name``."""
    try:
        module, cls = TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown pretext task {name!r}; choose one of: {', '.join(TASKS)}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def get_task(name: str, **options):
    """The pretext task called ``name``, configured by keyword ``options``."""
    cls = task_class(name)
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"bad option for task {name!r}: {err}") from None

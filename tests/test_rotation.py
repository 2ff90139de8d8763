"""Rotation pretext task: exact quarter turns, square crops, all four rotations per batch."""

import pytest
import torch

from ssl_teach.pretext import get_task
from ssl_teach.pretext.rotation import (
    ANGLES, CLASS_NAMES, all_rotations, apply, center_square_crop, letterbox, rotate,
    rotate_by_angle, sample_params,
)


def rotate_loop(image, k):
    """Reference written straight from the definition: turn anticlockwise k times, one pixel
    at a time (new[r][c] = old[c][S-1-r] for one quarter turn)."""
    out = image.clone()
    for _ in range(k % 4):
        s = out.shape[-1]
        new = torch.empty_like(out)
        for r in range(s):
            for c in range(s):
                new[:, r, c] = out[:, c, s - 1 - r]
        out = new
    return out


def test_angles_are_the_four_quarter_turns():
    assert ANGLES == (0, 90, 180, 270)
    assert CLASS_NAMES == ("0°", "90°", "180°", "270°")


def test_rotate_matches_the_per_pixel_loop(images):
    k = torch.tensor([0, 1, 2, 3, 1, 2])
    small = images[..., :8, :8]
    out = rotate(small, k)
    for i in range(len(small)):
        assert torch.equal(out[i], rotate_loop(small[i], int(k[i])))


def test_four_quarter_turns_are_the_identity(images):
    out = images
    for _ in range(4):
        out = rotate(out, 1)
    assert torch.equal(out, images)


def test_opposite_turns_cancel(images):
    k = torch.tensor([0, 1, 2, 3, 3, 1])
    assert torch.equal(rotate(rotate(images, k), (4 - k) % 4), images)


def test_all_rotations_keeps_every_turn_of_every_image(images):
    inputs, targets = all_rotations(images)
    n = len(images)
    assert inputs.shape == (4 * n, 3, 32, 32)
    assert torch.equal(targets.bincount(), torch.full((4,), n))
    for j in range(4 * n):
        assert torch.equal(inputs[j], rotate_loop(images[j % n], int(targets[j])))


def test_rotation_is_exact_no_interpolation(images):
    inputs, _ = all_rotations(images)
    # Exact turns only move pixels: the multiset of values is unchanged.
    for j in range(len(inputs)):
        source = images[j % len(images)]
        assert torch.equal(inputs[j].flatten().sort().values, source.flatten().sort().values)


def test_non_square_images_are_cropped_before_turning():
    wide = torch.rand(2, 3, 20, 32)
    square = center_square_crop(wide)
    assert square.shape == (2, 3, 20, 20)
    assert torch.equal(square, wide[..., :, 6:26])
    inputs, _ = all_rotations(wide)
    assert inputs.shape == (8, 3, 20, 20)


def test_rotate_rejects_non_square_input_with_a_hint():
    with pytest.raises(ValueError, match="square.*center_square_crop"):
        rotate(torch.rand(2, 3, 20, 32), 1)


def test_wrong_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        all_rotations(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="one k per image"):
        rotate(torch.rand(4, 3, 8, 8), torch.tensor([1, 2]))


def test_params_are_drawn_from_the_generator_only(images):
    a = sample_params(6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(99)  # the global state must not matter
    b = sample_params(6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a["flip"], b["flip"])


def test_flip_then_rotate_matches_reference(images):
    params = {"flip": torch.tensor([True, False, True, False, False, True])}
    inputs, targets = apply(images, params)
    flipped = torch.stack([im.flip(-1) if f else im for im, f in zip(images, params["flip"])])
    ref, ref_t = all_rotations(flipped)
    assert torch.equal(inputs, ref) and torch.equal(targets, ref_t)


def test_task_batch_and_model_shapes(images):
    task = get_task("rotation")
    inputs, targets = task.make_batch(images, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (24, 3, 32, 32) and targets.shape == (24,)
    from ssl_teach.models import build_backbone
    model = task.build_model(build_backbone(width=8))
    assert model(inputs).shape == (24, 4)
    assert task.chance == 0.25


def test_arbitrary_angle_rotation_agrees_with_quarter_turns_in_the_interior():
    img = torch.rand(1, 3, 16, 16)
    turned = rotate_by_angle(img, torch.tensor([90.0]))
    exact = rotate(img, 1)
    assert torch.allclose(turned[..., 2:-2, 2:-2], exact[..., 2:-2, 2:-2], atol=1e-4)


def test_letterbox_blacks_out_the_bottom_rows_only(images):
    boxed = letterbox(images, share=0.25)
    assert torch.all(boxed[..., 24:, :] == 0)
    assert torch.equal(boxed[..., :24, :], images[..., :24, :])
    task = get_task("rotation", letterbox=0.25, flip=False)
    inputs, targets = task.make_batch(images, generator=torch.Generator().manual_seed(0))
    # after a quarter turn anticlockwise the band is on the right
    turned = inputs[targets == 1]
    assert torch.all(turned[..., :, 24:] == 0)
    with pytest.raises(ValueError, match="letterbox share"):
        letterbox(images, share=1.0)

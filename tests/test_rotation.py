"""Rotation pretext task: exact quarter turns, square crops, all four rotations per batch."""

import pytest
import torch

from ssl_teach.pretext import get_task
from ssl_teach.pretext.rotation import (
    ANGLES, CLASS_NAMES, ROTATION_SETS, all_rotations, angle_set, apply, augment,
    center_square_crop, disc_mask, letterbox, rotate, rotate_by_angle, sample_params,
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


def crop_loop(image, top, left, pad):
    """Reference: pad one image (C, S, S) with zeros pixel by pixel, then slice the crop."""
    c, s, _ = image.shape
    padded = torch.zeros(c, s + 2 * pad, s + 2 * pad)
    for r in range(s):
        for q in range(s):
            padded[:, r + pad, q + pad] = image[:, r, q]
    return padded[:, top:top + s, left:left + s]


def test_random_crops_of_the_zero_padded_image_match_the_loop(images):
    params = sample_params(6, generator=torch.Generator().manual_seed(2), crop_pad=4)
    assert params["crop"].shape == (6, 2) and 0 <= params["crop"].min()
    assert params["crop"].max() <= 8
    inputs, targets = apply(images, params, crop_pad=4)
    for i in range(6):
        top, left = params["crop"][i].tolist()
        ref = crop_loop(images[i], top, left, 4)
        if params["flip"][i]:
            ref = ref.flip(-1)
        for k in range(4):
            assert torch.equal(inputs[k * 6 + i], rotate_loop(ref, k))
    assert torch.equal(targets, torch.arange(4).repeat_interleave(6))
    centre = {"flip": torch.zeros(6, dtype=torch.bool), "crop": torch.full((6, 2), 4)}
    assert torch.equal(apply(images, centre, crop_pad=4)[0][:6], images)  # no shift: as is


def test_crop_option_draws_crops_and_leaves_flips_as_they_were(images):
    a = sample_params(500, generator=torch.Generator().manual_seed(3))
    b = sample_params(500, generator=torch.Generator().manual_seed(3), crop_pad=8)
    assert torch.equal(a["flip"], b["flip"]) and "crop" not in a
    assert set(b["crop"].flatten().tolist()) == set(range(17))  # every shift 0..2 * pad
    task = get_task("rotation", crop_pad=4)
    inputs, targets = task.make_batch(images, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (24, 3, 32, 32) and targets.bincount().tolist() == [6, 6, 6, 6]
    plain, _ = get_task("rotation").make_batch(images, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(inputs, plain)
    # a zero border appears on one side only, at a random side: no hint of the turn
    assert (inputs == 0).any()
    assert task.options()["crop_pad"] == 4 and get_task("rotation").options()["crop_pad"] == 0
    with pytest.raises(ValueError, match="crop_pad must be an int >= 0"):
        get_task("rotation", crop_pad=-1)
    with pytest.raises(ValueError, match="needs params\\['crop'\\]"):
        apply(images, {"flip": torch.zeros(6, dtype=torch.bool)}, crop_pad=4)
    with pytest.raises(ValueError, match="0..2 \\* pad"):
        apply(images, {"flip": torch.zeros(6, dtype=torch.bool),
                       "crop": torch.full((6, 2), 9)}, crop_pad=4)


def test_the_zero_border_of_a_crop_does_not_tell_the_turn():
    # white images: only the crops' zero borders are dark. For every turn, each side of the
    # input is dark equally often (4 of the 9 shifts along an axis leave a border there)
    white = torch.ones(4000, 1, 16, 16)
    task = get_task("rotation", crop_pad=4)
    inputs, targets = task.make_batch(white, generator=torch.Generator().manual_seed(5))
    sides = torch.stack([inputs[:, 0, 0, :].eq(0).all(1), inputs[:, 0, -1, :].eq(0).all(1),
                         inputs[:, 0, :, 0].eq(0).all(1), inputs[:, 0, :, -1].eq(0).all(1)], 1)
    for k in range(4):
        share = sides[targets == k].float().mean(0)  # top, bottom, left, right
        assert torch.allclose(share, torch.full((4,), 4 / 9), atol=0.03), (k, share)


def test_the_ablation_sets_are_two_four_and_eight_evenly_spaced_angles():
    assert ROTATION_SETS[4] == ANGLES
    for n, angles in ROTATION_SETS.items():
        assert len(angles) == n and angles[0] == 0
        assert all(b - a == 360 // n for a, b in zip(angles, angles[1:]))
        task = get_task("rotation", rotations=n)
        assert task.num_classes == task.samples_per_image == n and task.chance == 1 / n
        assert task.class_names == tuple(f"{a}°" for a in angles)


def test_two_rotations_are_the_exact_half_turn_pairs(images):
    task = get_task("rotation", rotations=2)
    inputs, targets = task.make_batch(images, generator=torch.Generator().manual_seed(3))
    n = len(images)
    upright = augment(images, sample_params(n, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(targets, torch.tensor([0] * n + [1] * n))
    assert torch.equal(inputs[:n], upright)
    assert torch.equal(inputs[n:], torch.stack([rotate_loop(im, 2) for im in upright]))


def test_eight_rotations_cut_every_input_to_the_disc_so_corners_tell_nothing(images):
    task = get_task("rotation", rotations=8)
    inputs, targets = task.make_batch(images, generator=torch.Generator().manual_seed(0))
    n, s = len(images), images.shape[-1]
    assert inputs.shape == (8 * n, 3, s, s) and torch.equal(targets.bincount(), torch.full((8,), n))
    # the same pixels are black in every input, whatever the angle: the corners outside the disc
    r = torch.arange(s) - (s - 1) / 2
    outside = r.view(-1, 1) ** 2 + r.view(1, -1) ** 2 > (s / 2) ** 2
    assert outside.any() and torch.all(inputs[..., outside] == 0)
    # quarter turns stay exact inside the disc; 45 degrees is the interpolated turn
    upright = augment(images, sample_params(n, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(inputs[2 * n:3 * n], disc_mask(rotate(upright, 1)))
    turned = disc_mask(rotate_by_angle(upright, torch.full((n,), 45.0)))
    assert torch.allclose(inputs[n:2 * n], turned)


def test_disc_mask_keeps_the_inscribed_disc_and_nothing_else():
    x = torch.ones(1, 1, 8, 8)
    m = disc_mask(x)[0, 0]
    assert m[0, 0] == 0 and m[3, 3] == 1 and m[0, 3] == 1 and m[3, 0] == 1
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.T)
    for row in range(8):  # one pixel at a time: inside when the pixel centre is in the disc
        for col in range(8):
            inside = (row - 3.5) ** 2 + (col - 3.5) ** 2 <= 16
            assert m[row, col] == float(inside)


def test_angle_set_of_the_quarter_turns_is_all_rotations(images):
    square = center_square_crop(images)
    assert all(torch.equal(a, b) for a, b in zip(angle_set(square, ANGLES), all_rotations(square)))


def test_other_rotation_counts_are_a_clear_error():
    with pytest.raises(ValueError, match="rotations must be one of 2, 4, 8"):
        get_task("rotation", rotations=3)

"""Augmented copies: the geometry of shifts and flips, seeded draws keyed by (seed, epoch, copy) and image,
and the config that asks for them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mlpcli.config import load_config
from mlpcli.data.augment import Copy, Images, Mirror, Shifted, evaluation_views, shift_and_flip, training_views
from mlpcli.errors import ConfigError, DataError

PICTURE = np.array([[1, 2, 3, 4],
                    [5, 6, 7, 8],
                    [9, 10, 11, 12]], np.uint8)[None, :, :, None]     # one 3x4 gray image


def moved(fill: str, flip: bool = False) -> np.ndarray:
    """PICTURE shifted by one row down and one column left in the crop window (dy=1, dx=-1), pad 1."""
    return shift_and_flip(PICTURE, np.array([[1, -1]]), np.array([flip]), 1, fill)[0, :, :, 0]


def test_a_shift_reads_the_image_dy_rows_below_and_dx_columns_right_filled_by_hand():
    np.testing.assert_array_equal(moved("zero"), [[0, 5, 6, 7],
                                                  [0, 9, 10, 11],
                                                  [0, 0, 0, 0]])
    np.testing.assert_array_equal(moved("edge"), [[5, 5, 6, 7],
                                                  [9, 9, 10, 11],
                                                  [9, 9, 10, 11]])
    np.testing.assert_array_equal(moved("reflect"), [[6, 5, 6, 7],       # mirrored at the border pixel
                                                     [10, 9, 10, 11],
                                                     [6, 5, 6, 7]])
    np.testing.assert_array_equal(moved("zero", flip=True), [[7, 6, 5, 0],
                                                             [11, 10, 9, 0],
                                                             [0, 0, 0, 0]])
    unmoved = shift_and_flip(PICTURE, np.zeros((1, 2), int), np.array([False]), 1, "zero")
    np.testing.assert_array_equal(unmoved, PICTURE)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 7), st.integers(2, 7), st.sampled_from([1, 3]), st.data())
def test_every_pixel_of_a_shifted_copy_comes_from_its_place_in_the_image(height, width, channels, data):
    pad = data.draw(st.integers(0, min(height, width) - 1))
    n = data.draw(st.integers(1, 4))
    seed = data.draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, size=(n, height, width, channels), dtype=np.uint8)
    shifts = rng.integers(-pad, pad + 1, size=(n, 2))
    flips = rng.random(n) < 0.5
    zero = shift_and_flip(images, shifts, np.zeros(n, bool), pad, "zero")
    edge = shift_and_flip(images, shifts, np.zeros(n, bool), pad, "edge")
    for i, (dy, dx) in enumerate(shifts):
        for y in range(height):
            for x in range(width):
                inside = 0 <= y + dy < height and 0 <= x + dx < width
                expected = images[i, y + dy, x + dx] if inside else 0
                np.testing.assert_array_equal(zero[i, y, x], expected)
                np.testing.assert_array_equal(edge[i, y, x], images[i, min(max(y + dy, 0), height - 1),
                                                                   min(max(x + dx, 0), width - 1)])
    flipped = shift_and_flip(images, shifts, flips, pad, "reflect")
    unflipped = shift_and_flip(images, shifts, np.zeros(n, bool), pad, "reflect")
    np.testing.assert_array_equal(flipped, np.where(flips[:, None, None, None], unflipped[:, :, ::-1], unflipped))


def copy(**changes) -> Copy:
    return Copy(**{"seed": 3, "epoch": 0, "copy": 0, "pad": 2, "fill": "reflect", "flip": True, **changes})


def test_draws_of_image_i_do_not_depend_on_how_many_are_drawn():
    shifts, flips = copy().draws(1000)
    few_shifts, few_flips = copy().draws(10)
    np.testing.assert_array_equal(few_shifts, shifts[:10])
    np.testing.assert_array_equal(few_flips, flips[:10])
    assert set(shifts.ravel().tolist()) == {-2, -1, 0, 1, 2} and set(flips.tolist()) == {False, True}
    assert not copy(flip=False).draws(1000)[1].any()


@pytest.mark.parametrize("other", [{"seed": 4}, {"epoch": 1}, {"copy": 1}])
def test_other_seeds_epochs_and_copy_numbers_draw_otherwise(other):
    assert not np.array_equal(copy().draws(50)[0], copy(**other).draws(50)[0])
    np.testing.assert_array_equal(copy(**other).draws(50)[0], copy(**other).draws(50)[0])


def test_a_copy_of_an_image_depends_on_its_position_alone_not_on_its_batch():
    images = np.random.default_rng(0).integers(0, 256, size=(30, 8, 9, 3), dtype=np.uint8)
    view = copy()
    whole = view(images, np.arange(30))
    np.testing.assert_array_equal(np.concatenate([view(images[:7], np.arange(7)), view(images[7:], np.arange(7, 30))]),
                                  whole)
    shifts, flips = view.draws(30)
    np.testing.assert_array_equal(whole, shift_and_flip(images, shifts, flips, 2, "reflect"))
    assert not np.array_equal(whole, images)


def test_the_views_of_a_run_follow_its_config():
    cfg = load_config(None, ["seed=5", "data.flip=true", "data.augment={copies: 2, pad: 3, fill: zero}"])
    views = training_views(cfg, (16, 16, 3), epoch=4)
    assert views == (Images(), Mirror(), Copy(5, 4, 0, 3, "zero", True), Copy(5, 4, 1, 3, "zero", True))
    assert [view.name for view in views] == ["images", "mirror images", "copy 1", "copy 2"]
    assert len({view.key for view in views}) == 4
    assert evaluation_views(cfg, (16, 16, 3)) == (Images(),)
    assert evaluation_views(load_config(None, ["data.flip_eval=true"]), (16, 16, 3)) == (Images(), Mirror())
    assert training_views(load_config(None), (16, 16, 3)) == (Images(),)
    with pytest.raises(DataError, match="data.augment.pad: a shift of 16 pixels leaves nothing of the 16x20 images"):
        training_views(load_config(None, ["data.augment={copies: 1, pad: 16}"]), (16, 20, 3))


def test_shift_eval_adds_the_four_diagonal_shifts_and_with_flip_eval_their_mirror_images():
    shifted = evaluation_views(load_config(None, ["data.shift_eval=2", "data.augment.fill=edge"]), (16, 16, 3))
    assert shifted == (Images(), *(Shifted(dy, dx, "edge") for dy, dx in ((-2, -2), (-2, 2), (2, -2), (2, 2))))
    both = evaluation_views(load_config(None, ["data.shift_eval=2", "data.flip_eval=true"]), (16, 16, 3))
    assert both[:2] == (Images(), Mirror()) and len(both) == 10
    assert set(both[2:]) == {Shifted(dy, dx, "reflect", mirror) for dy in (-2, 2) for dx in (-2, 2)
                             for mirror in (False, True)}
    assert len({view.key for view in both}) == 10 and len({view.name for view in both}) == 10
    with pytest.raises(DataError, match="data.shift_eval: a shift of 16 pixels leaves nothing of the 20x16 images"):
        evaluation_views(load_config(None, ["data.shift_eval=16"]), (20, 16, 3))


@settings(max_examples=40, deadline=None)
@given(height=st.integers(2, 9), width=st.integers(2, 9), dy=st.integers(-8, 8), dx=st.integers(-8, 8),
       mirror=st.booleans(), data=st.data())
def test_a_shifted_view_moves_every_image_alike_by_its_fixed_offset(height, width, dy, dx, mirror, data):
    shift = max(abs(dy), abs(dx))
    images = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, 256, (3, height, width, 2), np.uint8)
    view = Shifted(dy, dx, "edge", mirror)(images, np.arange(3))
    out = view[:, :, ::-1] if mirror else view
    for y in range(height):
        for x in range(width):
            np.testing.assert_array_equal(out[:, y, x], images[:, min(max(y + dy, 0), height - 1),
                                                                  min(max(x + dx, 0), width - 1)])
    assert shift or np.array_equal(out, images)


@pytest.mark.parametrize("override, message", [
    ("data.augment.copies=-1", "data.augment.copies: -1 is out of range; it must be at least 0"),
    ("data.augment.fill=wrap", "data.augment.fill: 'wrap' (str) is not one of reflect, edge, zero"),
    ("data.augment.redraw=true", "data.augment.redraw: there are no copies to redraw; set data.augment.copies"),
    ("data.augment={copies: 2, pad: 0, flip: false}", "data.augment: with pad 0 and flip false every copy would "
                                                      "equal its image"),
    ("data.augment.cpies=2", "unknown key 'data.augment.cpies'; did you mean 'copies'?"),
    ("features.extractors=[{bow: {encoding: soft_threshold}}]",
     "is not one of hard, triangle, soft-threshold; did you mean 'soft-threshold'?"),
    ("features.extractors=[{bow: {alpha: -1}}]", "alpha: -1.0 is out of range; it must be at least 0.0"),
])
def test_bad_augment_and_encoding_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)

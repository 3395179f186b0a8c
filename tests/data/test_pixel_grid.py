"""The pixel -> coordinate convention: (row, col) -> (x, y), x to the right, y up, row-major order."""

from __future__ import annotations

import pytest
import torch

from enf.data import image_to_signal, imshow_extent, pixel_coords, signal_to_image


def test_corner_pixels_and_axes() -> None:
    h, w = 3, 5
    xy = pixel_coords(h, w)
    assert xy.dtype == torch.float32
    assert xy.shape == (h * w, 2)
    torch.testing.assert_close(xy[0 * w + (w - 1)], torch.tensor([1.0, 1.0]))  # top right
    torch.testing.assert_close(xy[0], torch.tensor([-1.0, 1.0]))  # top left
    torch.testing.assert_close(xy[(h - 1) * w], torch.tensor([-1.0, -1.0]))  # bottom left
    torch.testing.assert_close(xy[(h - 1) * w + (w - 1)], torch.tensor([1.0, -1.0]))  # bottom right
    grid = xy.reshape(h, w, 2)
    torch.testing.assert_close(grid[1, :, 0], torch.linspace(-1, 1, w))  # x grows left -> right
    torch.testing.assert_close(grid[:, 2, 1], torch.linspace(1, -1, h))  # y decreases top -> bottom
    assert torch.all(grid[:, :, 0] == grid[0:1, :, 0]) and torch.all(grid[:, :, 1] == grid[:, 0:1, 1])


def test_dtype_and_degenerate_axis() -> None:
    xy = pixel_coords(1, 3, dtype=torch.float64)
    assert xy.dtype == torch.float64
    torch.testing.assert_close(xy, torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("bad", [(0, 3), (3, -1), (2.0, 3)])
def test_bad_sizes(bad: tuple) -> None:
    with pytest.raises(ValueError, match="must be a positive int"):
        pixel_coords(*bad)


def test_signal_round_trip_is_exact_and_row_major() -> None:
    image = torch.rand(2, 4, 6, 3)
    signal = image_to_signal(image)
    assert signal.shape == (2, 24, 3)
    r, c = 2, 5
    assert torch.equal(signal[1, r * 6 + c], image[1, r, c])
    assert torch.equal(signal_to_image(signal, 4, 6), image)
    # coordinates and signal are paired pixel by pixel: the top-right pixel value sits at (1, 1)
    idx = int(((pixel_coords(4, 6) - torch.tensor([1.0, 1.0])).abs().sum(-1)).argmin())
    assert torch.equal(signal[:, idx], image[:, 0, -1])


def test_shape_errors_name_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(4, 6, 3\)"):
        image_to_signal(torch.zeros(4, 6, 3))
    with pytest.raises(ValueError, match=r"\(2, 23, 3\)"):
        signal_to_image(torch.zeros(2, 23, 3), 4, 6)


def test_imshow_extent_puts_pixel_centres_on_coordinates() -> None:
    h, w = 4, 7
    left, right, bottom, top = imshow_extent(h, w)
    cols, rows = torch.meshgrid(torch.arange(w), torch.arange(h), indexing="xy")
    # matplotlib with origin="upper": column c centre at left + (c + .5) dx, row r centre at top - (r + .5) dy
    x = left + (cols + 0.5) * (right - left) / w
    y = top - (rows + 0.5) * (top - bottom) / h
    expected = torch.stack([x.reshape(-1), y.reshape(-1)], -1).float()
    torch.testing.assert_close(pixel_coords(h, w), expected)


def test_rotate_images_matches_numpy_and_scipy():
    """90 degrees is np.rot90 (a pixel permutation); 30 degrees is scipy's bilinear rotation about the centre."""
    import math

    import numpy as np
    from scipy import ndimage

    from enf.data.grid import rotate_images

    im = np.random.default_rng(0).random((9, 9))
    im[0, 0] = 0.0  # the background (image minimum) is 0, as scipy's cval
    batch = torch.tensor(np.stack([im, im]))[..., None]
    turned = rotate_images(batch, torch.tensor([math.pi / 2, math.radians(30)], dtype=torch.float64))[..., 0]
    assert np.abs(turned[0].numpy() - np.rot90(im)).max() < 1e-12
    ref = ndimage.rotate(im, 30, reshape=False, order=1, mode="constant", cval=0.0)
    assert np.abs(turned[1].numpy() - ref)[2:-2, 2:-2].max() < 1e-12
    clockwise = ndimage.rotate(im, -30, reshape=False, order=1, mode="constant", cval=0.0)
    assert np.abs(turned[1].numpy() - clockwise)[2:-2, 2:-2].max() > 0.1  # negative control: the direction


def test_rotate_images_fills_with_the_background_and_checks_shapes():
    import math

    from enf.data.grid import rotate_images

    im = torch.full((1, 8, 8, 1), -0.5)
    im[0, 3:5, 3:5] = 1.0
    out = rotate_images(im, torch.tensor([math.radians(45)]))
    assert out[0, 0, 0, 0] == -0.5  # a corner comes from outside the grid: the background
    with pytest.raises(ValueError, match="angle must have shape"):
        rotate_images(im, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        rotate_images(im[0], torch.tensor([0.0]))

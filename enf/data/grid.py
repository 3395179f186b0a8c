"""The one pixel -> coordinate convention used everywhere in ``enf`` (training, metrics and plots).

An image ``[H, W, C]`` (channels last; a batch is ``[B, H, W, C]``) is a signal sampled on a regular grid of
``[-1, 1]^2``. Pixel ``(row, col)`` sits at the coordinate ``(x, y)`` with

* ``x = linspace(-1, 1, W)[col]``: x grows from the left column (``x = -1``) to the right column (``x = +1``);
* ``y = linspace(1, -1, H)[row]``: y points **up**, the top row is ``y = +1`` and the bottom row ``y = -1``.

(An axis of length 1 sits at 0.) Pixels are flattened in row-major order, so ``pixel_coords(H, W)[r * W + c]``
is the coordinate of pixel ``(r, c)`` and ``image_to_signal`` / ``signal_to_image`` flatten/unflatten
images in exactly that order.

Planar PDE grids are stored the other way round, ``fields[..., i, j, C]`` at ``coords[i, j] = (x_i, y_j)``
(first grid axis along x, second along y, both increasing). :func:`plane_grid_to_image` is the one place that
converts such a grid into the image layout above (rows from top ``y`` to bottom, columns left to right),
so plots of PDE frames and of images share one orientation.

Plotting: with ``plt.imshow(image, extent=imshow_extent(H, W))`` (default ``origin="upper"``) a latent
at ``(x, y)`` drawn with ``plt.scatter(x, y)`` lands on the pixel whose centre is ``(x, y)``.
``extent=(-1, 1, -1, 1)`` is the same picture up to half a pixel at the borders (it puts the image
*edges*, not the outermost pixel *centres*, at +-1).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

__all__ = [
    "image_to_signal",
    "imshow_extent",
    "pixel_coords",
    "plane_grid_to_image",
    "rotate_images",
    "signal_to_image",
]


def _axis(n: int, start: float, end: float, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
    if n == 1:
        return torch.zeros(1, dtype=dtype, device=device)
    return torch.linspace(start, end, n, dtype=torch.float64, device=device).to(dtype)


def _check_size(height: int, width: int) -> None:
    for label, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")


def pixel_coords(
    height: int, width: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Coordinates ``(x, y)`` of every pixel of an ``height x width`` image, ``[H * W, 2]``, row-major.

    ``x = linspace(-1, 1, W)[col]`` (left to right) and ``y = linspace(1, -1, H)[row]`` (top row ``y = +1``).

    Example: ``pixel_coords(2, 3)`` is ``[[-1, 1], [0, 1], [1, 1], [-1, -1], [0, -1], [1, -1]]``.
    """
    _check_size(height, width)
    xs = _axis(width, -1.0, 1.0, dtype, device)
    ys = _axis(height, 1.0, -1.0, dtype, device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each, row-major
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def imshow_extent(height: int, width: int) -> tuple[float, float, float, float]:
    """``extent`` for ``plt.imshow`` (``origin="upper"``): pixel centres land exactly on ``pixel_coords``."""
    _check_size(height, width)
    half_x = 1.0 / (width - 1) if width > 1 else 1.0
    half_y = 1.0 / (height - 1) if height > 1 else 1.0
    return (-1.0 - half_x, 1.0 + half_x, -1.0 - half_y, 1.0 + half_y)


def image_to_signal(image: Tensor) -> Tensor:
    """Flatten images ``[B, H, W, C]`` into signals ``[B, H * W, C]`` in the order of :func:`pixel_coords`."""
    if image.ndim != 4:
        raise ValueError(f"image must have shape [B, H, W, C], got shape {tuple(image.shape)}")
    return rearrange(image, "b h w c -> b (h w) c")


def signal_to_image(signal: Tensor, height: int, width: int) -> Tensor:
    """Unflatten signals ``[B, H * W, C]`` (order of :func:`pixel_coords`) into images ``[B, H, W, C]``."""
    _check_size(height, width)
    if signal.ndim != 3 or signal.shape[1] != height * width:
        raise ValueError(
            f"signal must have shape [B, {height} * {width} = {height * width}, C], "
            f"got shape {tuple(signal.shape)}"
        )
    return rearrange(signal, "b (h w) c -> b h w c", h=height, w=width)


def plane_grid_to_image(values: Tensor) -> Tensor:
    """A planar PDE grid ``[..., nx, ny, C]`` (``values[..., i, j]`` at ``(x_i, y_j)``, both increasing) in the
    image layout ``[..., ny, nx, C]`` of :func:`pixel_coords` (row 0 is the largest ``y``, column 0 the
    smallest ``x``). Works on tensors and numpy arrays; applied to the ``coords`` grid itself it gives the
    ``(x, y)`` of each pixel of the returned image."""
    if values.ndim < 3:
        raise ValueError(f"values must have shape [..., nx, ny, C], got shape {tuple(values.shape)}")
    swapped = values.swapaxes(-3, -2)  # [..., ny, nx, C], row j = y_j increasing
    if isinstance(swapped, Tensor):
        return swapped.flip(-3)
    return swapped[..., ::-1, :, :]


def rotate_images(image: Tensor, angle: Tensor) -> Tensor:
    """Images ``[B, H, W, C]`` rotated counter-clockwise by ``angle [B]`` radians about the image centre.

    The rotated image is resampled on the same pixel grid: ``out(x) = image(R(-angle) x)`` with ``x`` the
    :func:`pixel_coords` of each pixel, bilinear interpolation, and each image's minimum (its background)
    where ``R(-angle) x`` falls outside the grid. Resampling blurs a little, as rotating a real photo would.
    """
    if image.ndim != 4:
        raise ValueError(f"image must have shape [B, H, W, C], got shape {tuple(image.shape)}")
    if angle.shape != image.shape[:1]:
        raise ValueError(f"angle must have shape [B] = [{image.shape[0]}], got {tuple(angle.shape)}")
    b, h, w, _ = image.shape
    xy = pixel_coords(h, w, dtype=image.dtype, device=image.device)  # [H*W, 2]
    c, s = torch.cos(angle).to(image.dtype), torch.sin(angle).to(image.dtype)
    rot_inv = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # R(-angle), [B, 2, 2]
    src = torch.einsum("bij,nj->bni", rot_inv, xy)
    grid = torch.stack([src[..., 0], -src[..., 1]], -1).reshape(b, h, w, 2)  # grid_sample: y down
    background = image.amin(dim=(1, 2, 3), keepdim=True)
    chw = rearrange(image - background, "b h w c -> b c h w")
    out = torch.nn.functional.grid_sample(
        chw, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return rearrange(out, "b c h w -> b h w c") + background

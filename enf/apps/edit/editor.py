"""A trained image ENF ready for editing: encode images to latents, decode latents to images.

    editor = ImageEditor.from_checkpoint("runs/mnist/version_0/checkpoints/last.ckpt")
    z = editor.encode(editor.dataset_image(3))                  # [1, L, ...] latents of test image 3
    z2 = enf.editing.translate(z, editor.geometry, [0.2, 0.0], select=[4, 5])
    after = editor.decode(z2)                                   # [1, H, W, C] in [0, 1]

Images are float arrays ``[H, W, C]`` (or a batch ``[B, H, W, C]``) in ``[0, 1]`` on the grid of
:mod:`enf.data.grid` (x to the right, y up, both in ``[-1, 1]``).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from enf.data import keys
from enf.data.grid import image_to_signal, pixel_coords, signal_to_image
from enf.latents import Latents

__all__ = ["IMAGE_FORMATS", "MAX_IMAGE_PIXELS", "ImageEditor", "image_from_bytes", "image_to_png"]

#: the image formats PIL may decode here (an allowlist: PostScript/EPS would run Ghostscript)
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")

MAX_IMAGE_PIXELS = 36_000_000  # decoded size limit of image files (a small compressed file can be huge)

log = logging.getLogger(__name__)


def image_from_bytes(data: bytes, *, height: int, width: int, num_channels: int) -> np.ndarray:
    """Decode an image file's bytes (PNG, JPEG, ...) with PIL into ``[height, width, num_channels]`` in ``[0, 1]``.

    Non-square images are centre-cropped to a square first, then resized (bicubic) to the model's grid;
    colour is converted to grey (``num_channels == 1``) or RGB (``3``). Unreadable data, or an image of more
    than :data:`MAX_IMAGE_PIXELS` pixels (checked before decoding), is a ``ValueError``.
    """
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"the image is {w} x {h} pixels; at most {MAX_IMAGE_PIXELS} pixels are accepted"
                )
            im.load()
            im = im.convert("L" if num_channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        reason = type(exc).__name__ if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ValueError(f"not a readable image file ({', '.join(IMAGE_FORMATS)}): {reason}") from None
    w, h = im.size
    side = min(w, h)
    im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    if im.size != (width, height):
        im = im.resize((width, height), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def image_to_png(image: np.ndarray, *, scale: int = 1) -> bytes:
    """PNG bytes of an image ``[H, W, C]`` in ``[0, 1]`` (clipped), enlarged ``scale`` times (nearest)."""
    arr = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    arr = np.round(arr * 255.0).astype(np.uint8)
    arr = arr[..., 0] if arr.shape[-1] == 1 else arr
    im = Image.fromarray(arr)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), resample=Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


class ImageEditor:
    """A fitted image model (decoder + fitter) and, optionally, the dataset it was trained on.

    Args:
        module: a :class:`~enf.training.FieldFittingModule` whose field spec is an image.
        datamodule: the run's :class:`~enf.data.ImageDataModule` (for :meth:`dataset_image`), or ``None``.
        num_steps: inner steps of test-time encoding (``None``: as trained).
    """

    def __init__(self, module: Any, *, datamodule: Any = None, num_steps: int | None = None) -> None:
        spec = module.field_spec
        if spec is None or spec.kind != "image" or len(spec.grid_shape) != 2:
            kind = None if spec is None else spec.kind
            raise ValueError(
                f"editing needs a model fitted to images (field kind 'image'), got kind {kind!r}; "
                "train one with `enf fit --config configs/fit/mnist.yaml`"
            )
        if num_steps is not None and num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        self.module = module.eval()
        self.datamodule = datamodule
        self.num_steps = num_steps
        self.height, self.width = spec.grid_shape
        self.num_channels = spec.num_channels
        self.dataset_name = spec.name

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        config: str | Path | None = None,
        root: str | None = None,
        with_data: bool = True,
        num_steps: int | None = None,
    ) -> ImageEditor:
        """Load ``enf fit``'s checkpoint; the dataset comes from the run's ``config.yaml`` (next to
        ``checkpoints/`` unless ``config`` is given). ``with_data=False`` skips the dataset."""
        from enf.training.checkpoints import load_fit_checkpoint
        from enf.training.run_folder import load_datamodule_from_run

        fit = load_fit_checkpoint(path)
        datamodule = None
        if with_data:
            config = Path(config) if config else Path(path).parent.parent / "config.yaml"
            datamodule = load_datamodule_from_run(config, overrides={"root": root} if root else None)
        return cls(fit.module, datamodule=datamodule, num_steps=num_steps)

    # ------------------------------------------------------------------ model facts
    @property
    def geometry(self):
        return self.module.geometry

    @property
    def decoder(self):
        return self.module.decoder

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.num_channels)

    def dataset_size(self, split: str = "test") -> int:
        if self.datamodule is None:
            return 0
        return len(self.datamodule.dataset(split))

    def dataset_image(self, index: int, *, split: str = "test") -> np.ndarray:
        """Image ``index`` of ``split`` as ``[H, W, C]`` in ``[0, 1]``."""
        if self.datamodule is None:
            raise ValueError("this editor was built without its dataset; pass an image instead")
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        dataset = self.datamodule.dataset(split)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(dataset):
            raise IndexError(
                f"image index {index!r} out of range: {split} has {len(dataset)} images (0..{len(dataset) - 1})"
            )
        signal = dataset[index][keys.SIGNAL].numpy()
        return signal.reshape(self.height, self.width, self.num_channels)

    def image_from_bytes(self, data: bytes) -> np.ndarray:
        """An uploaded image file, brought to the model's grid and channels."""
        return image_from_bytes(data, height=self.height, width=self.width, num_channels=self.num_channels)

    def check_image(self, image: np.ndarray) -> np.ndarray:
        """``image`` as ``[B, H, W, C]``; wrong shapes or non-finite values are a ``ValueError``."""
        arr = np.asarray(image)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.image_shape:
            raise ValueError(
                f"image must be [H, W, C] = {list(self.image_shape)} (or a batch of them), got {list(np.shape(image))}; "
                "load files with ImageEditor.image_from_bytes to resize them"
            )
        if not np.isfinite(arr).all():
            raise ValueError("image has NaN or infinite pixels")
        return arr

    # ------------------------------------------------------------------ encode / decode
    def coords(
        self, height: int | None = None, width: int | None = None, *, batch_size: int = 1
    ) -> torch.Tensor:
        """Pixel coordinates ``[B, H * W, 2]`` of an ``height x width`` grid (default: the model's)."""
        h, w = height or self.height, width or self.width
        x = pixel_coords(h, w, dtype=self.dtype, device=self.module.device)
        return x.unsqueeze(0).expand(batch_size, -1, -1)

    def encode(self, image: np.ndarray, *, num_steps: int | None = None) -> Latents:
        """Latents of images ``[H, W, C]`` or ``[B, H, W, C]`` with the trained inner loop (``num_steps`` inner
        steps; default the editor's, else as trained)."""
        arr = self.check_image(image)
        signal = image_to_signal(torch.as_tensor(arr, dtype=self.dtype, device=self.module.device))
        batch = {
            keys.COORDS: self.coords(batch_size=arr.shape[0]),
            keys.SIGNAL: signal,
            keys.INDEX: torch.zeros(arr.shape[0], dtype=torch.long, device=self.module.device),
        }
        steps = num_steps if num_steps is not None else self.num_steps
        with torch.enable_grad():
            z = self.module.encode(batch, train=False, num_steps=steps)
        return z.detach()

    @torch.no_grad()
    def decode(self, z: Latents, *, height: int | None = None, width: int | None = None) -> np.ndarray:
        """Images ``[B, H, W, C]`` (float, unclipped) decoded from ``z`` on an ``height x width`` grid."""
        h, w = height or self.height, width or self.width
        z = z.to(dtype=self.dtype, device=self.module.device)
        pred = self.decoder(self.coords(h, w, batch_size=z.batch_size), z)
        return signal_to_image(pred, h, w).cpu().numpy()

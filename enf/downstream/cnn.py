"""``PixelCNN``: a plain convolutional classifier on the pixels, the reference the latent classifiers are
compared with (same data, budget and training loop in :class:`~enf.training.ClassificationModule`)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PixelCNN"]


class PixelCNN(nn.Module):
    """Three 3x3 convolution stages (``width``, ``2 width``, ``4 width`` channels, each GELU + 2x2 max-pool but the
    last), global average pooling and a linear layer.

    Args:
        num_channels: image channels ``C``.
        num_classes: number of classes ``K``.
        width: channels of the first stage.
        dropout: dropout before the last layer (training only).

    Shapes: images ``[B, H, W, C]`` (channels last, as the data modules give them) -> logits ``[B, K]``.
    """

    def __init__(self, *, num_channels: int, num_classes: int, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        for label, value in (("num_channels", num_channels), ("num_classes", num_classes), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        self.num_channels = num_channels
        self.num_classes = num_classes
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(num_channels, w, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[-1] != self.num_channels:
            raise ValueError(f"images must be [B, H, W, {self.num_channels}], got {tuple(images.shape)}")
        return self.head(self.features(images.permute(0, 3, 1, 2)))

"""Downstream models on latent point clouds: :class:`LatentClassifier` (invariant classification heads) and
:class:`PixelCNN`, the plain CNN on the pixels that the classifiers are compared with.
::

    clf = enf.downstream.LatentClassifier(geometry="se2", context_dim=32, num_classes=10)
    logits = clf(z)    # Latents [B, L, ...] -> [B, 10]; invariant to the group and to the latents' order
"""

from enf.downstream.classifier import READOUTS, LatentClassifier
from enf.downstream.cnn import PixelCNN

__all__ = ["READOUTS", "LatentClassifier", "PixelCNN"]

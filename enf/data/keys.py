"""Batch keys of the field contract, defined once (every dataset, module and callback uses these names).

A dataset item is a dict with

* ``COORDS``: float32 ``[N, coord_dim]``, the coordinates in the geometry's convention;
* ``SIGNAL``: float32 ``[N, C]``, the field at those coordinates (normalised if the data module says so);
* ``INDEX``: int, the position of the item in its split (rows of auto-decoder tables, latent files);

and optionally ``LABEL`` (int class), ``MASK`` (bool ``[N]``, observed points), ``TIME`` (float, the
frame's physical time), ``TRAJECTORY`` (int, trajectory of a PDE frame) and ``FRAME`` (int, its frame
index). Trajectory items (forecasting) carry ``SIGNAL`` as ``[T, N, C]`` and ``TIMES`` (float32 ``[T]``).
Landmark items (shape data, :mod:`enf.data.landmarks`) carry ``POSITIONS`` (float32 ``[K, d]``), ``INDEX``
and optionally ``LABEL`` instead of coordinates and a signal. Latent-cloud items (the shape VAE on ENF
latents, :class:`enf.data.LatentCloudDataModule`) carry ``POSITIONS``, ``POSES`` (``[L, pose_dim]``),
``CONTEXT`` (``[L, F]``), ``WINDOW`` (``[L, 1]``), the encoded ``COORDS``/``SIGNAL``, ``INDEX`` and ``LABEL``.
Signed-distance items (:class:`enf.data.SDFDataModule`) add ``UNIFORM`` (bool ``[N]``, the samples uniform in
the volume, on which occupancy IoU is measured) and ``SURFACE`` (float32 ``[Q, 3]``, points on the true
surface, for the Chamfer distance). Their metric loaders (:meth:`enf.data.SDFDataModule.metrics_dataloader`) add
``HELDOUT_COORDS`` (float32 ``[E, 3]``, fresh uniform points of the volume that no fitting step sees) and
``HELDOUT_SIGNAL`` (float32 ``[E, 1]``, their true signed distances): the held-out occupancy IoU.
Collated batches add a leading batch dimension ``B`` to every entry.
"""

from __future__ import annotations

__all__ = [
    "CONTEXT",
    "COORDS",
    "FRAME",
    "HELDOUT_COORDS",
    "HELDOUT_SIGNAL",
    "INDEX",
    "LABEL",
    "MASK",
    "OPTIONAL_KEYS",
    "POSES",
    "POSITIONS",
    "REQUIRED_KEYS",
    "SIGNAL",
    "SURFACE",
    "TIME",
    "TIMES",
    "TRAJECTORY",
    "UNIFORM",
    "WINDOW",
]

COORDS = "coords"
SIGNAL = "signal"
INDEX = "index"
LABEL = "label"
MASK = "mask"
TIME = "time"
TRAJECTORY = "trajectory"
FRAME = "frame"
TIMES = "times"
POSITIONS = "positions"
POSES = "poses"
CONTEXT = "context"
WINDOW = "window"
UNIFORM = "uniform"
SURFACE = "surface"
HELDOUT_COORDS = "heldout_coords"
HELDOUT_SIGNAL = "heldout_signal"

REQUIRED_KEYS = (COORDS, SIGNAL, INDEX)
OPTIONAL_KEYS = (
    LABEL,
    MASK,
    TIME,
    TRAJECTORY,
    FRAME,
    TIMES,
    UNIFORM,
    SURFACE,
    HELDOUT_COORDS,
    HELDOUT_SIGNAL,
)

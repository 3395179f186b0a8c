"""Fitting latents: Meta-SGD auto-decoding, auto-decoder tables, test-time optimisation.

The fitter protocol (:class:`Fitter`, implemented by :class:`MetaSGD` and :class:`AutoDecoder`). A fitter
is configured with its own settings only (a jsonargparse ``class_path`` config never repeats the
decoder's geometry or context width) and bound to the decoder afterwards::

    fitter = MetaSGD(num_latents=25, num_inner_steps=3)            # or AutoDecoder(num_latents=25)
    fitter = fitter.bind(geometry=decoder.geometry, context_dim=decoder.context_dim, num_signals=n_train)
    z = fitter.encode(decoder, coords, signal, index=index, train=True, loss=per_sample_mse,
                      subset_size=512, num_steps=None, mask=None)

- ``bind(*, geometry, context_dim, num_signals=0) -> self`` creates the parameters. Binding twice with the
  same values is a no-op, with different values a ``ValueError``; using an unbound fitter is a
  ``RuntimeError``. ``num_signals`` (training signals) is needed by :class:`AutoDecoder` (>= 1, its table
  rows) and ignored by :class:`MetaSGD`.
- ``encode(decoder, coords [B, N, d], signal [B, N, C], *, index=None, train, loss=per_sample_mse,
  subset_size=None, num_steps=None, mask=None) -> Latents``:
  ``train=True`` gives the differentiable training-time latents (Meta-SGD: the inner loop on
  ``subset_size`` random coordinates per step, graph kept unless first order; auto-decoder: the table rows
  ``index``); ``train=False`` encodes unseen signals (Meta-SGD: ``num_steps`` or ``num_eval_steps`` inner
  steps on all observed points; auto-decoder: equivariant Adam from the table mean), detached.
  ``loss(pred [B, n, C], target [B, n, C]) -> [B]`` is per sample (its shape is checked).
  ``mask [B, N]`` (bool, observed points): only observed points enter the fit - gathered when all samples
  have as many, otherwise the loss of each sample is evaluated on its own observed points.
- ``num_latents``: latent points per signal.

Every fit is equivariant: fitting ``g.signal`` from ``g.z0`` gives ``g.z`` (Meta-SGD: scalar step sizes per
pose block; test-time Adam: second moments shared per pose block, :class:`BlockAdam`). With
``MetaSGD(init_frame="moments")`` the initial latent itself is posed by the signal's intensity-moment frame
(:func:`moment_frame`), so encoding ``g.signal`` gives ``g.z`` with no ``g`` given.
"""

from enf.fitting.adam import BlockAdam, optimise_latents
from enf.fitting.autodecoder import AutoDecoder, AutoDecoderTable
from enf.fitting.base import Fitter, Loss, per_sample_loss
from enf.fitting.meta_sgd import (
    INIT_FRAMES,
    MetaSGD,
    sample_coordinate_subsets,
    squash_step_size,
    unsquash_step_size,
)
from enf.fitting.moments import moment_frame, pose_latents

__all__ = [
    "INIT_FRAMES",
    "AutoDecoder",
    "AutoDecoderTable",
    "BlockAdam",
    "Fitter",
    "Loss",
    "MetaSGD",
    "moment_frame",
    "optimise_latents",
    "per_sample_loss",
    "pose_latents",
    "sample_coordinate_subsets",
    "squash_step_size",
    "unsquash_step_size",
]

"""Fitting latents: Meta-SGD auto-decoding, auto-decoder tables, test-time optimisation."""

from enf.fitting.autodecoder import AutoDecoderTable, optimise_latents
from enf.fitting.meta_sgd import MetaSGD, sample_coordinate_subsets

__all__ = ["AutoDecoderTable", "MetaSGD", "optimise_latents", "sample_coordinate_subsets"]

"""Neural network modules: embeddings, bi-invariant cross-attention, the ENF decoder, the global-latent
baseline decoder, fixed background fields."""

from enf.nn.attention import TIE_TOLERANCE, BiInvariantCrossAttention, nearest_latents, tie_tolerance
from enf.nn.background import ZonalProfile
from enf.nn.decoder import EquivariantNeuralField
from enf.nn.embedding import RandomFourierFeatures
from enf.nn.global_field import GlobalLatentField

__all__ = [
    "TIE_TOLERANCE",
    "BiInvariantCrossAttention",
    "EquivariantNeuralField",
    "GlobalLatentField",
    "RandomFourierFeatures",
    "ZonalProfile",
    "nearest_latents",
    "tie_tolerance",
]

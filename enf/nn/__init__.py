"""Neural network modules: embeddings, bi-invariant cross-attention, the ENF decoder."""

from enf.nn.attention import TIE_TOLERANCE, BiInvariantCrossAttention, nearest_latents, tie_tolerance
from enf.nn.decoder import EquivariantNeuralField
from enf.nn.embedding import RandomFourierFeatures

__all__ = [
    "TIE_TOLERANCE",
    "BiInvariantCrossAttention",
    "EquivariantNeuralField",
    "RandomFourierFeatures",
    "nearest_latents",
    "tie_tolerance",
]

"""Neural network modules: embeddings, bi-invariant cross-attention, the ENF decoder."""

from enf.nn.attention import BiInvariantCrossAttention
from enf.nn.decoder import EquivariantNeuralField
from enf.nn.embedding import RandomFourierFeatures

__all__ = ["BiInvariantCrossAttention", "EquivariantNeuralField", "RandomFourierFeatures"]

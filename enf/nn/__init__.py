"""Neural network modules: embeddings, bi-invariant cross-attention, the ENF decoder, the global-latent
baseline decoder, fixed background fields, invariant message passing over latent point clouds."""

from enf.nn.attention import TIE_TOLERANCE, BiInvariantCrossAttention, nearest_latents, tie_tolerance
from enf.nn.background import ZonalProfile
from enf.nn.decoder import EquivariantNeuralField
from enf.nn.embedding import RandomFourierFeatures
from enf.nn.global_field import GlobalLatentField
from enf.nn.message_passing import MessagePassingBlock, edge_embedding

__all__ = [
    "TIE_TOLERANCE",
    "BiInvariantCrossAttention",
    "EquivariantNeuralField",
    "GlobalLatentField",
    "MessagePassingBlock",
    "RandomFourierFeatures",
    "ZonalProfile",
    "edge_embedding",
    "nearest_latents",
    "tie_tolerance",
]

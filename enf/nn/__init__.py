"""Neural network modules: embeddings, bi-invariant cross-attention, the ENF decoder, the global-latent
baseline decoder, fixed background fields, invariant message passing and self-attention over latent point
clouds, gated feed-forward blocks."""

from enf.nn.attention import TIE_TOLERANCE, BiInvariantCrossAttention, nearest_latents, tie_tolerance
from enf.nn.background import ZonalProfile
from enf.nn.decoder import EquivariantNeuralField
from enf.nn.embedding import RandomFourierFeatures
from enf.nn.feed_forward import GatedFeedForward
from enf.nn.global_field import GlobalLatentField
from enf.nn.latent_attention import LatentSelfAttention
from enf.nn.message_passing import MessagePassingBlock, edge_embedding, nearest_latent_mask

__all__ = [
    "TIE_TOLERANCE",
    "BiInvariantCrossAttention",
    "EquivariantNeuralField",
    "GatedFeedForward",
    "GlobalLatentField",
    "LatentSelfAttention",
    "MessagePassingBlock",
    "RandomFourierFeatures",
    "ZonalProfile",
    "edge_embedding",
    "nearest_latent_mask",
    "nearest_latents",
    "tie_tolerance",
]

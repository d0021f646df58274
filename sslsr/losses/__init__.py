"""Training losses: the self-similarity loss (SSL) and its edge mask."""

from sslsr.edges import edge_mask, mask_stride_pattern
from sslsr.losses.ssl import self_similarity_graph, ssl_loss

# GAN / perceptual / translational-consistency losses used by sslsr.train (pure functions).
from sslsr.losses.gan import (
    bce_with_logits,
    ragan_discriminator_loss,
    ragan_generator_loss,
    vanilla_discriminator_loss,
    vanilla_generator_loss,
)
from sslsr.losses.perceptual import perceptual_loss
from sslsr.losses.translational import translational_loss

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

# The other GAN methods' terms (LDL, BebyGAN, SPSR); the resizers stay in sslsr.losses.bicubic.
from sslsr.losses.bestbuddy import best_buddy_loss
from sslsr.losses.gradient import gradient_map
from sslsr.losses.ldl import artifact_loss, artifact_map
from sslsr.losses.region import region_mask

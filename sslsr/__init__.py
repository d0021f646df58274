"""sslsr: the self-similarity loss (SSL) and GAN super-resolution training/evaluation in JAX."""

__version__ = "0.1.0"

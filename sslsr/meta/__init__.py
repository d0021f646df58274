"""Meta-learned test-time adaptation from faces (MetaF2N, Yin et al. ICCV 2023), layer 2.

`tasks`: the training tasks (one Real-ESRGAN degradation shared by face and background images);
`inner`: the inner (adaptation) step, pure JAX; `adapt`: the Upscaler that adapts an SR network to
one photo from its faces. The meta-training recipe is `sslsr.train.recipes.metaf2n`, the command
`python -m sslsr.adapt`. See docs/metaf2n.md.
"""

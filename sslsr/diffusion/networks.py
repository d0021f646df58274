"""A ResShift run's networks and process from its config: the denoiser (`config.generator`), the
autoencoder (`config.autoencoder`), the schedule (`config.diffusion`), and the weight files.

Config groups read here (`sslsr.train.recipes.resshift.base_config` documents every field):
  generator.arch / kwargs / init_from   the denoiser (a registry DENOISER row) and its .pth
  autoencoder.arch / kwargs / weights   a registry AUTOENCODER row ('' = pixel space) and its .pth
  diffusion.*                           sf, steps, kappa, min_noise_level, etas_end, power,
                                        sample_steps, sample_seed, chop_size, chop_stride

Weight files are read through `sslsr.weights` (`read_state_dict` + `pytorch.from_torch`); a file
that does not fit raises `UserError` with one line naming the config field and the file, and
saying which network the file holds when it is the other one (a denoiser file given as the
autoencoder and vice versa).
"""

from __future__ import annotations

import os
import pathlib

import ml_collections
from flax import nnx

from sslsr.diffusion.sampler import ResShiftSampler
from sslsr.diffusion.schedule import Schedule
from sslsr.errors import UserError
from sslsr.models import registry

# Key prefixes that tell the two published files apart (guided-diffusion UNet / LDM autoencoder).
_DENOISER_KEYS = ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.")
_AUTOENCODER_KEYS = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")


def schedule_of(config: ml_collections.ConfigDict, sample_steps: int | None = None) -> Schedule:
    """The process of `config.diffusion`, respaced to `sample_steps` (default diffusion.sample_steps;
    the full diffusion.steps when that is 0)."""
    d = config.diffusion
    s = Schedule.resshift(steps=int(d.steps), kappa=float(d.kappa), min_noise_level=float(d.min_noise_level),
                          etas_end=float(d.etas_end), power=float(d.power), latent=bool(config.autoencoder.arch))
    n = int(sample_steps or d.sample_steps or d.steps)
    return s if n == s.num_steps else s.respace(n)


def build_unet(config: ml_collections.ConfigDict, seed: int = 0) -> nnx.Module:
    """The denoiser `config.generator` describes, freshly initialised."""
    return registry.build(config.generator.arch, rngs=nnx.Rngs(seed), **dict(config.generator.kwargs))


def build_autoencoder(config: ml_collections.ConfigDict) -> nnx.Module | None:
    """The autoencoder `config.autoencoder` describes (random weights; None in pixel space)."""
    a = config.autoencoder
    if not a.arch:
        return None
    return registry.build(a.arch, rngs=nnx.Rngs(0), **dict(a.kwargs))


def _holds(sd: dict) -> str | None:
    """'denoiser' / 'autoencoder' when the keys are those of one published file, else None."""
    keys = list(sd)
    for name, prefixes in (("denoiser", _DENOISER_KEYS), ("autoencoder", _AUTOENCODER_KEYS)):
        if keys and sum(k.startswith(prefixes) for k in keys) > len(keys) // 2:
            return name
    return None


def load_weights(path: str, arch: str, kwargs: dict, where: str, role: str) -> nnx.Module:
    """`arch(**kwargs)` holding the PyTorch weights of `path`; UserError('<where>: ...') in one line
    (`where`: the config field or flag) when the file is missing, unreadable, the other network's
    (`role`: 'denoiser' / 'autoencoder'), or of other sizes."""
    from sslsr.weights import pytorch, read_state_dict

    p = pathlib.Path(os.path.expanduser(path))
    if not p.is_file():
        raise UserError(f"{where}: {path!r} is not a file")
    try:
        sd, _ = read_state_dict(p)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    held = _holds(sd)
    if held is not None and held != role:
        raise UserError(f"{where}: {p} holds a ResShift {held} ({arch} expects the {role} file)")
    try:
        module = pytorch.from_torch(sd, arch, **kwargs)
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3])[:300]
        raise UserError(f"{where}: {p} does not fit {arch}({kwargs})" + (f": {detail}" if detail else "")) from None
    return module


def load_autoencoder(config: ml_collections.ConfigDict) -> nnx.Module | None:
    """The frozen autoencoder with the weights of `autoencoder.weights` (None in pixel space), eval mode."""
    a = config.autoencoder
    if not a.arch:
        return None
    module = load_weights(a.weights, a.arch, dict(a.kwargs), "config.autoencoder.weights", "autoencoder")
    module.eval()
    return module


def init_unet(config: ml_collections.ConfigDict) -> nnx.Module:
    """The denoiser to train: random (seeded with config.seed) or from `generator.init_from`."""
    g = config.generator
    if g.init_from:
        return load_weights(g.init_from, g.arch, dict(g.kwargs), "config.generator.init_from", "denoiser")
    return build_unet(config, config.seed)


def make_sampler(config: ml_collections.ConfigDict, unet: nnx.Module, autoencoder: nnx.Module | None, *,
                 sample_steps: int | None = None, seed: int | None = None, dtype: str = "float32") -> ResShiftSampler:
    """The sampler a run's config describes (`diffusion.sample_steps`, `.sample_seed`, `.sf`, chopping);
    `sample_steps` / `seed` override the config's."""
    d = config.diffusion
    return ResShiftSampler(unet, autoencoder, schedule_of(config, sample_steps), scale=int(d.sf),
                           seed=int(d.sample_seed if seed is None else seed), dtype=dtype,
                           chop_size=int(d.chop_size), chop_stride=int(d.chop_stride))

"""The one table from architecture name to constructor, role, scale and converter metadata.

Every name -> architecture lookup in the package goes through `architecture(name)`: building a
generator from a config, restoring a checkpoint, converting PyTorch weights, reading a model's
scale. Adding an architecture means writing its module and adding one `Architecture` row here.

The table is plain data built when this module is imported; nothing registers itself elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flax import nnx

from sslsr.models import spsr
from sslsr.models.discriminators import (UNetDiscriminatorSN, VGGDiscriminator192, VGGDiscriminator296,
                                         VGGStyleDiscriminator)
from sslsr.models.elan import ELAN, torch_buffers as elan_torch_buffers
from sslsr.models.gpen import FullGenerator as GPEN, torch_buffers as gpen_torch_buffers
from sslsr.models.masknet import MaskNet
from sslsr.models.msrresnet import MSRResNet
from sslsr.models.mtcnn import ONet, PNet, RNet
from sslsr.models.ranker import RankerVGG12
from sslsr.models.resshift_unet import ResShiftUNet, torch_buffers as resshift_torch_buffers
from sslsr.models.rrdbnet import RRDBNet
from sslsr.models.srresnet import SRResNet
from sslsr.models.srvgg import SRVGGNetCompact
from sslsr.models.swinir import SwinIR, torch_buffers as swinir_torch_buffers
from sslsr.models.vgg import AlexNetFeatures, VGGFeatures
from sslsr.models.vq_autoencoder import VQAutoencoder

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
FEATURES = "features"
# RankSRGAN's ranker: SR images (B, S, S, 3) in [0, 1] -> (B, 1) scores (lower = better: its loss minimises them).
RANKER = "ranker"
DETECTOR = "detector"  # face detection networks (MTCNN), filled by sslsr.weights.facenet
# Per-pixel trust in a pseudo ground truth (MetaF2N's MaskNet): concat(lr_up, pseudo_gt) (B, H, W, 6) -> (B, H, W, 1).
MASK = "mask"
# Face restoration (GPEN): aligned faces (B, S, S, 3) in [-1, 1] -> restored faces, same shape.
RESTORER = "restorer"
# Latent diffusion (ResShift): a denoiser (x_t, t, lq) -> x0 and the autoencoder of its latent space.
DENOISER = "denoiser"
AUTOENCODER = "autoencoder"


def _is_torchvision_extra(key: str) -> bool:
    # torchvision checkpoints carry the classifier, and a feature extractor cut at e.g. conv5_3
    # does not hold the deeper conv layers; those keys are dropped, missing ones still raise.
    return key.startswith("classifier.") or key.startswith("features.")


def _is_ldm_training_loss(key: str) -> bool:
    # LDM first-stage checkpoints saved during training carry the loss (LPIPS, discriminator)
    # under 'loss.'; ResShift's loader ignores keys the model lacks, so they are dropped too.
    return key.startswith("loss.")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One network family.

    name: the registry key (also the `arch` of configs, `from_torch` and the CLIs).
    constructor: `(**kwargs, rngs=...) -> nnx.Module`.
    role: GENERATOR, DISCRIMINATOR or FEATURES.
    scale_kwarg: the constructor keyword holding the upscaling factor (generators only).
    default_kwargs: keywords added when a caller leaves them out (e.g. converting a checkpoint
      without spelling out the constructor's required arguments).
    torch_buffers: module -> {PyTorch key: array} of buffers the PyTorch original stores but the
      NNX module recomputes (checked on import, written on export).
    torch_ignore: PyTorch keys with no NNX counterpart, dropped on import.
    torch_key: (module, key spelled from the NNX path) -> the PyTorch key, for originals whose
      nesting (nn.Sequential indices) NNX attribute names cannot spell (SPSRNet).
    torch_aliases: module -> {PyTorch key: key it duplicates}, for a submodule PyTorch registers
      under two names (its state dict holds it twice): checked equal on import, written on export.
    """

    name: str
    constructor: Callable[..., nnx.Module]
    role: str
    scale_kwarg: str | None = None
    default_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    torch_buffers: Callable[[nnx.Module], dict[str, np.ndarray]] | None = None
    torch_ignore: Callable[[str], bool] | None = None
    torch_key: Callable[[nnx.Module, str], str] | None = None
    torch_aliases: Callable[[nnx.Module], dict[str, str]] | None = None

    def kwargs(self, **overrides) -> dict[str, Any]:
        """The constructor keywords: `default_kwargs` updated with `overrides`."""
        return {**self.default_kwargs, **overrides}

    def build(self, *, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
        return self.constructor(**self.kwargs(**kwargs), rngs=rngs)

    def scale(self, kwargs: Mapping[str, Any]) -> int | None:
        """The upscaling factor these constructor keywords give (None for non-generators)."""
        if self.scale_kwarg is None:
            return None
        if self.scale_kwarg in kwargs:
            return int(kwargs[self.scale_kwarg])
        default = _constructor_default(self.constructor, self.scale_kwarg)
        return None if default is None else int(default)


def _constructor_default(constructor, name: str):
    import inspect

    # NNX's module metaclass hides the class signature; __init__ still has it.
    target = constructor.__init__ if isinstance(constructor, type) else constructor
    param = inspect.signature(target).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _vgg(arch: str):
    def build(**kwargs):
        return VGGFeatures(arch, **kwargs)

    return build


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("RRDBNet", RRDBNet, GENERATOR, scale_kwarg="scale"),
        Architecture("MSRResNet", MSRResNet, GENERATOR, scale_kwarg="upscale"),
        Architecture("SwinIR", SwinIR, GENERATOR, scale_kwarg="upscale", torch_buffers=swinir_torch_buffers),
        Architecture("SRVGGNetCompact", SRVGGNetCompact, GENERATOR, scale_kwarg="upscale"),
        # Defaults = the SSL paper's ELAN x4 (BasicSR port); ELAN-light: m_elan=24, c_elan=60, n_share=1.
        Architecture("ELAN", ELAN, GENERATOR, scale_kwarg="scale", torch_buffers=elan_torch_buffers),
        Architecture("VGGStyleDiscriminator", VGGStyleDiscriminator, DISCRIMINATOR,
                     default_kwargs={"num_in_ch": 3, "num_feat": 64}),
        Architecture("UNetDiscriminatorSN", UNetDiscriminatorSN, DISCRIMINATOR, default_kwargs={"num_in_ch": 3}),
        # SPSR (gradient branch; `with_branch(x)` -> (sr, branch)); RankSRGAN's generator and ranker;
        # mmsr's VGG discriminators for 192 (BebyGAN, ELAN-GAN) and 296 (RankSRGAN) crops.
        Architecture("SPSRNet", spsr.SPSRNet, GENERATOR, scale_kwarg="upscale", torch_buffers=spsr.torch_buffers,
                     torch_key=spsr.torch_key, torch_aliases=spsr.torch_aliases),
        Architecture("SRResNet", SRResNet, GENERATOR, scale_kwarg="upscale"),
        Architecture("RankerVGG12", RankerVGG12, RANKER),
        Architecture("VGGDiscriminator192", VGGDiscriminator192, DISCRIMINATOR),
        Architecture("VGGDiscriminator296", VGGDiscriminator296, DISCRIMINATOR),
        Architecture("VGG16", _vgg("vgg16"), FEATURES, torch_ignore=_is_torchvision_extra),
        Architecture("VGG19", _vgg("vgg19"), FEATURES, torch_ignore=_is_torchvision_extra),
        Architecture("AlexNet", AlexNetFeatures, FEATURES, torch_ignore=_is_torchvision_extra),
        Architecture("MTCNN-PNet", PNet, DETECTOR),
        Architecture("MTCNN-RNet", RNet, DETECTOR),
        Architecture("MTCNN-ONet", ONet, DETECTOR),
        Architecture("MaskNet", MaskNet, MASK),
        # Defaults = GPEN-BFR-512; sslsr.models.gpen.BFR[256] for GPEN-BFR-256.
        Architecture("GPEN", GPEN, RESTORER, torch_buffers=gpen_torch_buffers),
        # Defaults = ResShift's published x4 models (realsr_swinunet_realesrgan256, VQ-f4).
        Architecture("ResShiftUNet", ResShiftUNet, DENOISER, torch_buffers=resshift_torch_buffers),
        Architecture("VQAutoencoder", VQAutoencoder, AUTOENCODER, torch_ignore=_is_ldm_training_loss),
    )
}


def names(role: str | None = None) -> tuple[str, ...]:
    """Registered names, optionally only those of one role."""
    return tuple(n for n, a in ARCHITECTURES.items() if role is None or a.role == role)


def architecture(name: str) -> Architecture:
    """The registry row of `name`; ValueError listing the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; expected one of {', '.join(ARCHITECTURES)}") from None


def build(name: str, *, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
    """`architecture(name).build(rngs=rngs, **kwargs)`."""
    return architecture(name).build(rngs=rngs, **kwargs)


def of_module(module: nnx.Module) -> Architecture:
    """The registry row whose constructor built `module` (generators and discriminators)."""
    for arch in ARCHITECTURES.values():
        if isinstance(arch.constructor, type) and type(module) is arch.constructor:
            return arch
    raise ValueError(f"{type(module).__name__} is not a registered architecture")


def scale_of(module: nnx.Module) -> int:
    """The upscaling factor of a built generator (RRDBNet's `scale`, SwinIR's `upscale`, ...)."""
    arch = of_module(module)
    if arch.scale_kwarg is None:
        raise ValueError(f"{arch.name} is not a generator: it has no scale")
    return int(getattr(module, arch.scale_kwarg))

"""Flax NNX super-resolution networks (NHWC), parameter names matching the PyTorch originals."""

from sslsr.models.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from sslsr.models.msrresnet import MSRResNet
from sslsr.models.rrdbnet import RRDBNet
from sslsr.models.swinir import SwinIR
from sslsr.models.vgg import AlexNetFeatures, VGGFeatures

__all__ = [
    "AlexNetFeatures",
    "MSRResNet",
    "RRDBNet",
    "SwinIR",
    "UNetDiscriminatorSN",
    "VGGFeatures",
    "VGGStyleDiscriminator",
]

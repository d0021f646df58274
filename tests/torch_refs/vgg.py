"""torchvision-layout VGG / AlexNet `features` stacks in plain PyTorch (test-only; no torchvision).

Index i of the returned `nn.Sequential` is torchvision's `features[i]`, so state-dict keys are
`features.<i>.weight` / `.bias` once wrapped in `Features`.
"""

import numpy as np
import torch
from torch import nn

VGG_CFGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class Features(nn.Module):
    """Holds `features` like torchvision's VGG/AlexNet; forward returns every layer's output."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features

    def forward(self, x):
        outs = []
        for layer in self.features:
            x = layer(x)
            outs.append(x)
        return outs


def vgg_features(arch: str) -> Features:
    layers, cin = [], 3
    for v in VGG_CFGS[arch]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    return Features(nn.Sequential(*layers))


def alexnet_features() -> Features:
    return Features(
        nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
    )


def load_hwio(model: Features, weights: dict[str, np.ndarray]) -> None:
    """Loads {'features.<i>.kernel' (HWIO), 'features.<i>.bias'} into the conv layers present."""
    sd = {}
    for key, value in weights.items():
        if key.startswith("features.") and key.endswith(".kernel"):
            sd[key.replace(".kernel", ".weight")] = torch.from_numpy(np.ascontiguousarray(value.transpose(3, 2, 0, 1)))
        elif key.startswith("features.") and key.endswith(".bias"):
            sd[key] = torch.from_numpy(np.asarray(value))
    # assign=True also works for a model built on the 'meta' device (no slow random init).
    model.load_state_dict(sd, strict=True, assign=True)

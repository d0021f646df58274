"""PyTorch rebuild of MTCNN's PNet / RNet / ONet (facenet-pytorch's layer names and shapes), written
from the published architecture for parity tests only (NCHW). Loads the wheel's .pt state dicts."""

import torch
from torch import nn


def _block(in_ch, out_ch, k, name, pool=None):
    layers = [(f"conv{name}", nn.Conv2d(in_ch, out_ch, k)), (f"prelu{name}", nn.PReLU(out_ch))]
    if pool:
        layers.append((f"pool{name}", nn.MaxPool2d(*pool, ceil_mode=True)))
    return layers


class _Net(nn.Module):
    def __init__(self, trunk, dense, heads):
        super().__init__()
        self.trunk = [name for name, _ in trunk]
        for name, layer in trunk + dense + heads:
            self.add_module(name, layer)
        self.dense = [name for name, _ in dense]
        self.heads = [name for name, _ in heads]

    def forward(self, x):
        for name in self.trunk:
            x = getattr(self, name)(x)
        if self.dense:
            # the Caffe weights' order: (N, C, H, W) -> (N, W, H, C) before flattening
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
            for name in self.dense:
                x = getattr(self, name)(x)
        outs = [getattr(self, name)(x) for name in self.heads]
        # heads are (logits, regression[, landmarks]); facenet's order puts the probabilities last
        return (*outs[1:], torch.softmax(outs[0], dim=1))


def PNet():
    trunk = _block(3, 10, 3, "1", (2, 2)) + _block(10, 16, 3, "2") + _block(16, 32, 3, "3")
    return _Net(trunk, [], [("conv4_1", nn.Conv2d(32, 2, 1)), ("conv4_2", nn.Conv2d(32, 4, 1))])


def RNet():
    trunk = _block(3, 28, 3, "1", (3, 2)) + _block(28, 48, 3, "2", (3, 2)) + _block(48, 64, 2, "3")
    dense = [("dense4", nn.Linear(576, 128)), ("prelu4", nn.PReLU(128))]
    return _Net(trunk, dense, [("dense5_1", nn.Linear(128, 2)), ("dense5_2", nn.Linear(128, 4))])


def ONet():
    trunk = (_block(3, 32, 3, "1", (3, 2)) + _block(32, 64, 3, "2", (3, 2)) + _block(64, 64, 3, "3", (2, 2))
             + _block(64, 128, 2, "4"))
    dense = [("dense5", nn.Linear(1152, 256)), ("prelu5", nn.PReLU(256))]
    heads = [("dense6_1", nn.Linear(256, 2)), ("dense6_2", nn.Linear(256, 4)), ("dense6_3", nn.Linear(256, 10))]
    return _Net(trunk, dense, heads)


def load(name, path):
    """The network `name` ('pnet', 'rnet', 'onet') in eval mode with the state dict at `path`."""
    net = {"pnet": PNet, "rnet": RNet, "onet": ONet}[name]()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return net.eval()

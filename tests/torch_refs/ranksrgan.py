"""PyTorch rebuilds of RankSRGAN's networks (XPixelGroup/RankSRGAN `RankSRGAN_arch.py`): the
SRResNet generator and the ranker `Ranker_VGG12_296`, written from the published architecture for
parity tests only (NCHW). The ranker's first Linear takes 8 * nf inputs (the original's 512 for
its nf = 64) so that small widths work.
"""

import torch.nn.functional as F
from torch import nn

from tests.torch_refs.msrresnet import ResidualBlockNoBN  # mmsr's ResidualBlock_noBN: the same block


class SRResNet(nn.Module):
    def __init__(self, in_nc=3, out_nc=3, nf=64, nb=16, upscale=4):
        super().__init__()
        self.upscale = upscale
        self.conv_first = nn.Conv2d(in_nc, nf, 3, 1, 1)
        self.recon_trunk = nn.Sequential(*[ResidualBlockNoBN(nf) for _ in range(nb)])
        self.LRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        r = 3 if upscale == 3 else 2
        self.upconv1 = nn.Conv2d(nf, nf * r * r, 3, 1, 1)
        if upscale == 4:
            self.upconv2 = nn.Conv2d(nf, nf * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(r)
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1)

    def forward(self, x):
        fea = self.conv_first(x)
        out = self.LRconv(self.recon_trunk(fea))
        out = F.relu(self.pixel_shuffle(self.upconv1(out + fea)))
        if self.upscale == 4:
            out = F.relu(self.pixel_shuffle(self.upconv2(out)))
        return self.conv_last(F.relu(self.HRconv(out)))


class RankerVGG12(nn.Module):
    def __init__(self, in_nc=3, nf=64):
        super().__init__()
        self.conv0_0 = nn.Conv2d(in_nc, nf, 3, 1, 1)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1)
        self.bn0_1 = nn.BatchNorm2d(nf)
        chans = [nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf]
        for i in range(1, 5):
            cin, cout = chans[i - 1], chans[i]
            setattr(self, f"conv{i}_0", nn.Conv2d(cin, cout, 3, 1, 1))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(cout))
            setattr(self, f"conv{i}_1", nn.Conv2d(cout, cout, 4, 2, 1))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(cout))
        self.classifier = nn.Sequential(nn.Linear(8 * nf, 100), nn.LeakyReLU(0.2), nn.Linear(100, 1))

    def forward(self, x):
        lrelu = nn.functional.leaky_relu
        fea = lrelu(self.conv0_0(x), 0.2)
        fea = lrelu(self.bn0_1(self.conv0_1(fea)), 0.2)
        for i in range(1, 5):
            fea = lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(fea)), 0.2)
            fea = lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(fea)), 0.2)
        fea = nn.AvgPool2d(fea.size(2))(fea)
        return self.classifier(fea.view(fea.size(0), -1))

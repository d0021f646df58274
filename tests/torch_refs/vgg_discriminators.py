"""PyTorch rebuild of mmsr's `Discriminator_VGG_192` (BebyGAN / Simple-SR, the SSL code's
BebyGAN and ELAN-GAN) and RankSRGAN's `Discriminator_VGG_296`, written from the published
architectures for parity tests only (NCHW). Both are VGG-style: conv0_0 (bias), then stride-1 /
stride-2 conv pairs with BatchNorm and no bias (5 pairs after stage 0 for 192 -> 3x3, 4 for
296 -> 9x9), linear1 (-> 100), linear2 (-> 1), LeakyReLU 0.2.
"""

from torch import nn

SIZES = {192: (5, 3), 296: (4, 9)}  # input size -> (stages after stage 0, side at linear1)


class VGGDiscriminator(nn.Module):
    def __init__(self, in_nc, nf, size):
        super().__init__()
        self.stages, side = SIZES[size]
        self.conv0_0 = nn.Conv2d(in_nc, nf, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(nf)
        chans = [nf, 2 * nf, 4 * nf, 8 * nf] + [8 * nf] * (self.stages - 3)
        for i in range(1, self.stages + 1):
            cin, cout = chans[i - 1], chans[i]
            setattr(self, f"conv{i}_0", nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(cout))
            setattr(self, f"conv{i}_1", nn.Conv2d(cout, cout, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(cout))
        self.linear1 = nn.Linear(8 * nf * side * side, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, x):
        lrelu = nn.functional.leaky_relu
        fea = lrelu(self.conv0_0(x), 0.2)
        fea = lrelu(self.bn0_1(self.conv0_1(fea)), 0.2)
        for i in range(1, self.stages + 1):
            fea = lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(fea)), 0.2)
            fea = lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(fea)), 0.2)
        fea = lrelu(self.linear1(fea.reshape(fea.size(0), -1)), 0.2)
        return self.linear2(fea)

"""A compact segmentation + decision network trained from scratch (the supervised gate's model).

After Tabernik et al. (J. Intell. Manuf. 2019) and Božič et al. (Computers in Industry 2021),
scaled down for a CPU: four stages of two 3x3 convolutions (BatchNorm, ReLU), max-pooled between
stages, give features at 1/8 of the working scale; a 1x1 convolution turns them into a defect
logit map (the segmentation output). The decision head reads the features and the map through
one more strided convolution and global average + max pooling of both, and gives one image logit.

About 0.3 M parameters with the default widths (16, 32, 64, 96). Fully convolutional: any input
size that is a multiple of `STRIDE` (the gate pads to it).
"""

from __future__ import annotations

STRIDE = 8
"""Input pixels per map cell (three 2x2 max-pools)."""
DEFAULT_WIDTHS = (16, 32, 64, 96)


def build_segnet(widths=DEFAULT_WIDTHS, in_channels: int = 1):
    """nn.Module: (B, in_channels, H, W) -> (decision logit (B,), segmentation logits (B, 1, H/8, W/8))."""
    import torch
    import torch.nn as nn

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    class SegDecisionNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = list(widths)
            layers: list[nn.Module] = []
            prev = in_channels
            for k, c in enumerate(w):
                layers += block(prev, c)
                if k < len(w) - 1:
                    layers.append(nn.MaxPool2d(2))
                prev = c
            self.features = nn.Sequential(*layers)
            self.seg = nn.Conv2d(prev, 1, 1)
            d = max(16, prev // 2)
            self.dec_conv = nn.Sequential(nn.Conv2d(prev + 1, d, 3, stride=2, padding=1, bias=False),
                                          nn.BatchNorm2d(d), nn.ReLU(inplace=True))
            # inputs: avg + max of the decision features, avg + max of the segmentation logits
            self.dec_fc = nn.Linear(2 * d + 2, 1)

        def forward(self, x):
            f = self.features(x)
            s = self.seg(f)
            h = self.dec_conv(torch.cat([f, s], dim=1))
            pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3)),
                                s.mean(dim=(2, 3)), s.amax(dim=(2, 3))], dim=1)
            return self.dec_fc(pooled)[:, 0], s

    return SegDecisionNet()


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))

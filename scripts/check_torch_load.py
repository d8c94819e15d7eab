"""Loads a lit ExampleNet checkpoint into PyTorch's ExampleNet with strict=True.

usage: python3 scripts/check_torch_load.py CHECKPOINT [T10K_IMAGES PREDICTIONS_CSV]

Needs torch and safetensors. The checkpoint's weights are stored under the names PyTorch gives
the same network (model.0.weight ... model.11.bias); optimizer state (optimizer.*) is dropped.
With the MNIST test images (raw IDX) and the predictions.csv that `mnist predict` wrote for them,
it also checks that PyTorch predicts the same classes as lit.
"""
import csv
import sys

import torch
from safetensors.torch import load_file
from torch import nn


class ExampleNet(nn.Module):
    """The template's network, layer for layer."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(7 * 7 * 64, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.model(x)


def main() -> int:
    tensors = load_file(sys.argv[1])
    state = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    net = ExampleNet().eval()
    net.load_state_dict(state, strict=True)
    print(f"loaded {len(state)} tensors into ExampleNet with strict=True")
    if len(sys.argv) == 4:
        raw = open(sys.argv[2], "rb").read()
        n = int.from_bytes(raw[4:8], "big")
        images = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).reshape(n, 1, 28, 28)
        rows = [r for r in csv.DictReader(open(sys.argv[3])) if r["dataset"] == "mnist_test"]
        lit = torch.tensor([int(r["prediction"]) for r in rows])
        x = (images[: len(lit)].float() / 255 - 0.1307) / 0.3081
        with torch.no_grad():
            ours = net(x).argmax(-1)
        agree = (ours == lit).float().mean().item()
        print(f"PyTorch and lit agree on {agree:.2%} of {len(lit)} test images")
        if agree < 0.999:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""lit's `resnet` model in PyTorch: load a lit checkpoint into it, or time PyTorch's plain loop.

usage:
  python3 scripts/resnet_torch.py check CHECKPOINT DATA_DIR [DEPTH WIDTH]
      Loads the checkpoint (optimizer state dropped) with strict=True, buffers included, and
      prints the test accuracy on DATA_DIR's t10k images (Fashion-MNIST normalisation unless
      DATA_DIR's name says mnist).
  python3 scripts/resnet_torch.py bench DATA_DIR STEPS THREADS [BATCH]
      Trains the same network with Adam (lr 1e-3) on DATA_DIR's training images for STEPS
      batches in a plain PyTorch loop on THREADS threads and prints one JSON line
      {"seconds", "samples"}; `cargo xtask bench` runs this for its ResNet row.

Needs torch (and safetensors for check).
"""
import gzip
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: lit_kernels::nn::basic_block."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """crates/models/resnet, layer for layer and name for name."""

    def __init__(self, depth=8, width=16, in_channels=1, num_classes=10, dropout=0.2):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        for stage, out in [(1, width), (2, 2 * width), (3, 4 * width)]:
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(channels, out, 2 if stage > 1 and i == 0 else 1))
                channels = out
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.dropout(x))


def read_idx(data_dir, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            raw = (gzip.open if name.endswith(".gz") else open)(path, "rb").read()
            dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
            data = torch.frombuffer(bytearray(raw[4 + 4 * len(dims):]), dtype=torch.uint8)
            return data.reshape(dims)
    sys.exit(f"{data_dir}: no {stem} (raw or .gz)")


def normalised(images, data_dir):
    fashion = "fashion" in os.path.abspath(data_dir)
    mean, std = (0.2860, 0.3530) if fashion else (0.1307, 0.3081)
    return ((images.float() / 255 - mean) / std).unsqueeze(1)


def check(ckpt, data_dir, depth=8, width=16):
    from safetensors.torch import load_file

    state = {k: v for k, v in load_file(ckpt).items() if not k.startswith("optimizer.")}
    net = ResNet(depth, width).eval()
    net.load_state_dict(state, strict=True)
    buffers = sum(1 for k in state if k.endswith(("running_mean", "running_var", "tracked")))
    print(f"loaded {len(state)} tensors ({buffers} buffers) into ResNet-{depth} with strict=True")
    x = normalised(read_idx(data_dir, "t10k-images-idx3-ubyte"), data_dir)
    y = read_idx(data_dir, "t10k-labels-idx1-ubyte").long()
    with torch.no_grad():
        pred = torch.cat([net(x[i:i + 1000]).argmax(-1) for i in range(0, len(x), 1000)])
    print(f"PyTorch test accuracy: {(pred == y).float().mean().item():.4f} on {len(y)} images")


def bench(data_dir, steps, threads, batch=64):
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    x = normalised(read_idx(data_dir, "train-images-idx3-ubyte"), data_dir)
    y = read_idx(data_dir, "train-labels-idx1-ubyte").long()
    net = ResNet().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    start, samples, done = time.perf_counter(), 0, 0
    while done < steps:
        order = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            samples += batch
            done += 1
            if done == steps:
                break
    print(json.dumps({"seconds": time.perf_counter() - start, "samples": samples,
                      "torch": torch.__version__, "threads": threads}))


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:] or ["help"]
    if cmd == "check" and len(rest) >= 2:
        check(rest[0], rest[1], *map(int, rest[2:4]))
    elif cmd == "bench" and len(rest) >= 3:
        bench(rest[0], int(rest[1]), int(rest[2]), *map(int, rest[3:4]))
    else:
        sys.exit(__doc__)

"""lit's `resnet` model in PyTorch: load a lit checkpoint into it, or time PyTorch's plain loop.

usage:
  python3 scripts/resnet_torch.py check CHECKPOINT DATA_DIR [DEPTH WIDTH]
      Loads the checkpoint (optimizer state dropped) with strict=True, buffers included, and
      prints the test accuracy on DATA_DIR's t10k images (Fashion-MNIST normalisation unless
      DATA_DIR's name says mnist).
  python3 scripts/resnet_torch.py bench DATA_DIR STEPS THREADS [BATCH [NET [RUNNER]]]
      Trains NET (resnet, the default, or example: ExampleNet of torch_baseline.py) with Adam
      (lr 1e-3) on DATA_DIR's training images for STEPS batches on THREADS threads, in a plain
      PyTorch loop (RUNNER plain) or with Lightning's Trainer (lightning), and prints one JSON
      line {"seconds", "samples"} ({"error"} when Lightning is not installed);
      `cargo xtask bench --resnet` runs this.

Needs torch (and safetensors for check).
"""
import gzip
import json
import os
import resource
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


def network(name):
    if name == "example":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from torch_baseline import ExampleNet
        return ExampleNet()
    return ResNet()


def batches(x, y, steps, batch):
    """STEPS batches of a seeded permutation per pass over the data."""
    done = 0
    while done < steps:
        order = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i:i + batch]
            yield x[idx], y[idx]
            done += 1
            if done == steps:
                return


def bench(data_dir, steps, threads, batch=64, net="resnet", runner="plain"):
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    x = normalised(read_idx(data_dir, "train-images-idx3-ubyte"), data_dir)
    y = read_idx(data_dir, "train-labels-idx1-ubyte").long()
    model = network(net).train()
    if runner == "lightning":
        seconds = lightning_fit(model, list(batches(x, y, steps, batch)), steps)
        if seconds is None:
            print(json.dumps({"error": "PyTorch Lightning is not installed"}))
            return
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        for xb, yb in batches(x, y, steps, batch):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
    # Peak resident memory of this process (Linux reports ru_maxrss in KiB).
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "samples": steps * batch, "peak_rss_mb": peak_mb,
                      "torch": torch.__version__, "threads": threads}))


def lightning_fit(model, data, steps):
    """Seconds of Lightning's fit over the prepared batches; None without Lightning."""
    try:
        import lightning as L
    except ImportError:
        try:
            import pytorch_lightning as L
        except ImportError:
            return None

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, b, _):
            return F.cross_entropy(self.net(b[0]), b[1])

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Loader:
        """One iterable of batches (a plain list would be taken as several loaders)."""

        def __iter__(self):
            return iter(data)

        def __len__(self):
            return len(data)

    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(Module(), Loader())
    return time.perf_counter() - start


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:] or ["help"]
    if cmd == "check" and len(rest) >= 2:
        check(rest[0], rest[1], *map(int, rest[2:4]))
    elif cmd == "bench" and len(rest) >= 3:
        bench(rest[0], int(rest[1]), int(rest[2]), *map(int, rest[3:4]), *rest[4:6])
    else:
        sys.exit(__doc__)

#!/usr/bin/env python3
"""ExampleNet on MNIST with PyTorch's plain loop and with PyTorch Lightning, for comparison with lit.

The same network (tests/fixtures/make_fixtures.py), data (data/mnist, normalised with 0.1307 /
0.3081), batch size and optimizer (Adam, lr 1e-3) as `mnist fit`. Prints one line per run:

    torch-plain cuda bf16-mixed batch 64: 41234 samples/s (epoch 1.46 s), test_acc 0.9871

Usage: torch_baseline.py [--device cuda] [--batch-size 64] [--precision 32|bf16-mixed]
                         [--epochs 2] [--runner plain|lightning|both] [--data data/mnist]
Throughput is measured over the last epoch (the first one warms up kernels and caches). Both runners
take batches sliced from the data already on the device (a seeded permutation per epoch), as lit's
loader gathers batches ahead of the step, so the comparison is of the training loops.
"""
import argparse
import gzip
import os
import struct
import sys
import time

import torch
from torch import nn


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def load(folder, split):
    prefix = "train" if split == "train" else "t10k"
    def find(kind):
        for ext in ("-ubyte.gz", "-ubyte"):
            p = os.path.join(folder, f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}{ext}")
            if os.path.exists(p):
                return p
        sys.exit(f"missing {prefix}-{kind} in {folder}")
    x = read_idx(find("images")).float().div(255).sub(0.1307).div(0.3081).unsqueeze(1)
    y = read_idx(find("labels")).long()
    return x, y


class ExampleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(7 * 7 * 64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.model(x)


def autocast(device, precision):
    if precision == "bf16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def accuracy(net, x, y, device, precision, batch):
    net.eval()
    correct = 0
    with torch.no_grad(), autocast(device, precision):
        for i in range(0, len(x), 1024):
            correct += (net(x[i:i + 1024]).argmax(1) == y[i:i + 1024]).sum().item()
    net.train()
    return correct / len(x)


def plain(args, device, data):
    (xt, yt), (xs, ys) = data
    torch.manual_seed(0)
    net = ExampleNet().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    n = len(xt) // args.batch_size * args.batch_size
    epoch_time = 0.0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xt), device=device)
        sync(device)
        t0 = time.perf_counter()
        for i in range(0, n, args.batch_size):
            idx = perm[i:i + args.batch_size]
            with autocast(device, args.precision):
                loss = loss_fn(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        epoch_time = time.perf_counter() - t0
    return n / epoch_time, epoch_time, accuracy(net, xs, ys, device, args.precision, args.batch_size)


def lightning(args, device, data):
    try:
        import lightning as L
    except ImportError:
        try:
            import pytorch_lightning as L
        except ImportError:
            return None
    (xt, yt), (xs, ys) = data

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = ExampleNet()
            self.loss_fn = nn.CrossEntropyLoss()

        def training_step(self, batch, _):
            x, y = batch
            loss = self.loss_fn(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Timing(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            sync(device)
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            sync(device)
            self.last = time.perf_counter() - self.t0

    class OnDevice(torch.utils.data.IterableDataset):
        """Whole batches sliced from the on-device tensors, a new permutation each epoch."""
        def __len__(self):
            return len(xt) // args.batch_size

        def __iter__(self):
            perm = torch.randperm(len(xt), device=device)
            for i in range(len(self)):
                idx = perm[i * args.batch_size:(i + 1) * args.batch_size]
                yield xt[idx], yt[idx]

    loader = torch.utils.data.DataLoader(OnDevice(), batch_size=None)
    torch.manual_seed(0)
    module, timing = Module(), Timing()
    precision = "bf16-mixed" if args.precision == "bf16-mixed" else "32-true"
    trainer = L.Trainer(max_epochs=args.epochs, accelerator=device.type, devices=1,
                        precision=precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timing])
    trainer.fit(module, loader)
    n = len(loader) * args.batch_size
    net = module.net.to(device)
    return n / timing.last, timing.last, accuracy(net, xs, ys, device, args.precision, args.batch_size)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="32", choices=["32", "32-true", "bf16-mixed"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--runner", default="both", choices=["plain", "lightning", "both"])
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist"))
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    train, test = load(args.data, "train"), load(args.data, "test")
    data = ((train[0].to(device), train[1].to(device)), (test[0].to(device), test[1].to(device)))
    runners = {"plain": plain, "lightning": lightning}
    for name in (["plain", "lightning"] if args.runner == "both" else [args.runner]):
        out = runners[name](args, device, data)
        label = f"torch-{name} {device.type} {args.precision} batch {args.batch_size}"
        if out is None:
            print(f"{label}: not run (PyTorch Lightning is not installed)")
            continue
        rate, secs, acc = out
        print(f"{label}: {rate:.0f} samples/s (epoch {secs:.2f} s), test_acc {acc:.4f}", flush=True)


if __name__ == "__main__":
    main()

"""Reference values from PyTorch for lit's batch norm, adaptive pooling and residual block.

usage: python3 scripts/make_layer_fixtures.py > crates/lit-kernels/tests/fixtures/layers.json

Inputs are drawn in float32 and every value is computed in float64 from them, so the references
are exact for what lit computes in float32. Each case lists its tensors flattened, with shapes.
Backward passes take the gradient of sum(output * grad_output) for a random grad_output.
"""
import json

import torch
from torch import nn
import torch.nn.functional as F

torch.manual_seed(0)


def r(*shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape) * scale + shift).double()


def flat(t):
    return [float(v) for v in t.detach().double().flatten()]


def bn_case(shape, train, relu=False, residual=False, momentum=0.1, steps=1):
    """nn.BatchNorm{1,2}d with random affine parameters and running statistics, `steps` forward
    passes (the last one differentiated), in train or eval mode."""
    c = shape[1]
    bn = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(c, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.copy_(r(c, scale=0.5, shift=1.0))
        bn.bias.copy_(r(c, scale=0.5))
        bn.running_mean.copy_(r(c, scale=0.3))
        bn.running_var.copy_(r(c).abs() + 0.5)
    init = {k: flat(v) for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    bn.train(train)
    xs = [r(*shape, scale=2.0, shift=0.5) for _ in range(steps)]
    for x in xs[:-1]:
        bn(x)
    x = xs[-1].requires_grad_()
    res = r(*shape).requires_grad_() if residual else None
    y = bn(x)
    if res is not None:
        y = y + res
    if relu:
        y = F.relu(y)
    gy = r(*shape)
    (y * gy).sum().backward()
    case = {
        "shape": list(shape), "train": train, "relu": relu, "momentum": momentum,
        "inputs": [flat(x) for x in xs], "grad_output": flat(gy), "init": init,
        "output": flat(y), "grad_input": flat(x.grad),
        "grad_weight": flat(bn.weight.grad), "grad_bias": flat(bn.bias.grad),
        "running_mean": flat(bn.running_mean), "running_var": flat(bn.running_var),
        "num_batches_tracked": int(bn.num_batches_tracked),
    }
    if res is not None:
        case["residual"] = flat(res)
        case["grad_residual"] = flat(res.grad)
    return case


def pool_case(shape, out):
    x = r(*shape).requires_grad_()
    y = F.adaptive_avg_pool2d(x, out)
    gy = r(*y.shape)
    (y * gy).sum().backward()
    return {"shape": list(shape), "out": list(out), "input": flat(x), "output": flat(y),
            "output_shape": list(y.shape), "grad_output": flat(gy), "grad_input": flat(x.grad)}


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (expansion 1), as lit_kernels::nn::basic_block builds it."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(out + idt)


def block_case(cin, cout, stride, train):
    block = BasicBlock(cin, cout, stride).double()
    with torch.no_grad():
        for name, t in block.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(r(*t.shape).abs() + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(r(*t.shape, scale=0.2))
            elif name.endswith("weight") and t.dim() == 1:
                t.copy_(r(*t.shape, scale=0.2, shift=1.0))
            elif name.endswith("weight"):
                t.copy_(t.float().double())
    state = {k: flat(v) for k, v in block.state_dict().items() if not k.endswith("tracked")}
    shapes = {k: list(v.shape) for k, v in block.state_dict().items()}
    block.train(train)
    x = r(4, cin, 8, 8).requires_grad_()
    y = block(x)
    gy = r(*y.shape)
    (y * gy).sum().backward()
    return {"cin": cin, "cout": cout, "stride": stride, "train": train, "state": state,
            "shapes": shapes, "input": flat(x), "input_shape": list(x.shape),
            "output": flat(y), "grad_output": flat(gy), "grad_input": flat(x.grad),
            "grads": {k: flat(p.grad) for k, p in block.named_parameters()},
            "after": {k: flat(v) for k, v in block.state_dict().items()
                      if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}}


def main():
    cases = {
        "bn2d_train": bn_case((4, 3, 5, 5), True),
        "bn2d_eval": bn_case((4, 3, 5, 5), False),
        "bn2d_train_relu": bn_case((4, 3, 5, 5), True, relu=True),
        "bn2d_train_add_relu": bn_case((4, 3, 5, 5), True, relu=True, residual=True),
        "bn2d_eval_add_relu": bn_case((4, 3, 5, 5), False, relu=True, residual=True),
        "bn1d_train": bn_case((8, 4), True),
        "bn1d_eval": bn_case((8, 4), False),
        "bn1d_train_3d": bn_case((4, 3, 6), True),
        "bn2d_train_cumulative": bn_case((4, 3, 5, 5), True, momentum=None, steps=3),
        "bn2d_train_three_steps": bn_case((4, 3, 5, 5), True, steps=3),
    }
    pools = {"pool_1x1": pool_case((2, 3, 7, 7), (1, 1)), "pool_3x3": pool_case((2, 3, 7, 7), (3, 3)),
             "pool_2x4": pool_case((1, 2, 5, 9), (2, 4))}
    blocks = {"block_identity_train": block_case(4, 4, 1, True),
              "block_downsample_train": block_case(4, 8, 2, True),
              "block_downsample_eval": block_case(4, 8, 2, False)}
    print(json.dumps({"torch": torch.__version__, "batch_norm": cases, "adaptive_avg_pool2d": pools,
                      "basic_block": blocks}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Backprop CNN of the same shape as the convolutional EqProp baseline (conv_eqprop_torch.py).

The same layers: each conv layer (bias, no padding by default) followed by a 2x2 max-pool of
stride 2 and the activation, then the dense layers; for MNIST by default
1x28x28 -> conv 5x5 32 -> pool -> 32x12x12 -> conv 5x5 64 -> pool -> 64x4x4 -> dense 10.
(The activation after the pool, as in EqProp's rho(P(conv(s))); for ReLU and the hard
sigmoid this equals pooling after the activation since both are monotone.)

Defaults, chosen as a strong and fair baseline: ReLU, cross-entropy on the output logits,
Adam (lr 1e-3), batch 64, PyTorch's default initialisation, no augmentation, no dropout,
no weight decay, no schedule -- the usual recipe for this LeNet-like net, so that the
target conv EqProp must approach is not a weakened one. `--act hardsigmoid --loss mse` gives the
EqProp net's own activation (clamp(u, 0, 1)) and loss (1/2 ||y - onehot||^2 on the
clamped output) trained by backprop, to separate the learning rule from the model;
`--out-range=-1,2` clamps that output to another interval instead (an eqprop spec's `10:-1..2`).

Prints one line per epoch (train error, test error, seconds) and ends with one
`RESULT {json}` line (fields in bench/README.md). `--time-images N` times N training
images only.
"""

import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conv_eqprop_torch import (  # noqa: E402
    add_common_args, check_arch, conv_shapes, emit, load_images,
    macs_per_layer, setup, sync)


class PoolAct(torch.nn.Module):
    """2x2 max-pool of stride 2, then the activation."""

    def __init__(self, act):
        super().__init__()
        self.act = act

    def forward(self, u):
        u = F.max_pool2d(u, 2, stride=2)
        return F.relu(u) if self.act == "relu" else u.clamp(0.0, 1.0)


def build(in_shape, args):
    shapes = conv_shapes(in_shape, args.channels, args.kernels, args.paddings)
    mods = []
    for (c_in, c_out, k, _, _), p in zip(shapes, args.paddings):
        mods += [torch.nn.Conv2d(c_in, c_out, k, padding=p), PoolAct(args.act)]
    mods.append(torch.nn.Flatten())
    c, side = (shapes[-1][1], shapes[-1][4]) if shapes else (in_shape[0], in_shape[1])
    sizes = [c * side * side] + list(args.fc)
    for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(torch.nn.Linear(a, b))
        if j < len(sizes) - 2:
            mods.append(torch.nn.ReLU() if args.act == "relu" else torch.nn.Hardtanh(0.0, 1.0))
    return torch.nn.Sequential(*mods)


def loss_of(out, y, args):
    if args.loss == "ce":
        return F.cross_entropy(out, y)
    if args.act == "hardsigmoid":
        out = out.clamp(*args.out_range)  # the EqProp output neurons live in a box
    return 0.5 * ((out - F.one_hot(y, out.shape[1]).to(out.dtype)) ** 2).sum(1).mean()


def make_optimizer(model, args):
    if args.optim == "adam":
        return torch.optim.Adam(model.parameters(), lr=args.lr)
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)


def train_batch(model, opt, x, y, args):
    out = model(x)
    loss = loss_of(out, y, args)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return (out.detach().argmax(1) != y).sum()


def evaluate(model, xte, yte, args, device):
    model.eval()
    errors = 0
    with torch.no_grad():
        for i in range(0, xte.shape[0], args.eval_batch):
            pred = model(xte[i:i + args.eval_batch].to(device)).argmax(1)
            errors += int((pred != yte[i:i + args.eval_batch].to(device)).sum().item())
    model.train()
    return 100.0 * errors / xte.shape[0]


def run(args):
    device = setup(args)
    check_arch(args)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr, xte, yte = load_images(args)
    in_shape = tuple(xtr.shape[1:])
    model = build(in_shape, args).to(device)
    opt = make_optimizer(model, args)
    conv, dense = macs_per_layer(in_shape, args.channels, args.kernels, args.paddings, args.fc)
    # forward + input-gradient (all but the first layer) + weight-gradient products
    macs = sum(conv) + sum(dense)
    flops_train = 2 * (3 * macs - (conv[0] if conv else dense[0]))
    info = {
        "mode": "cnn-backprop", "dataset": args.dataset, "channels": args.channels,
        "kernels": args.kernels, "paddings": args.paddings, "fc": args.fc, "act": args.act,
        "loss": args.loss, "optim": args.optim, "lr": args.lr, "momentum": args.momentum,
        "batch_size": args.batch_size, "shift": args.shift, "seed": args.seed, "threads": torch.get_num_threads(),
        "device": str(device), "torch_version": torch.__version__,
        "flops_per_train_image": flops_train,
    }
    print(f"# cnn-backprop {args.dataset} {model} train {xtr.shape[0]} test {xte.shape[0]}",
          flush=True)
    print(f"# act {args.act} loss {args.loss} optim {args.optim} lr {args.lr} batch "
          f"{args.batch_size} threads {torch.get_num_threads()} device {device} "
          f"torch {torch.__version__} seed {args.seed}", flush=True)
    if args.time_images > 0:
        return time_images(model, opt, xtr, ytr, args, device, info)

    N = xtr.shape[0]
    hist = {"train_seconds_per_epoch": [], "test_error": [], "train_error": []}
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(N, generator=gen)
        sync(device)
        t0 = time.perf_counter()
        wrong = torch.zeros((), dtype=torch.int64, device=device)
        for i in range(0, N, args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb = shift_batch(xtr[idx], args.shift, gen)
            wrong += train_batch(model, opt, xb.to(device), ytr[idx].to(device), args)
        sync(device)
        secs = time.perf_counter() - t0
        train_err = 100.0 * int(wrong.item()) / N
        test_err = evaluate(model, xte, yte, args, device)
        print(f"epoch {epoch:3d}  train_err {train_err:6.2f}%  test_err {test_err:6.2f}%  "
              f"train_s {secs:7.2f}  ms/image {1e3 * secs / N:.3f}", flush=True)
        hist["train_seconds_per_epoch"].append(secs)
        hist["train_error"].append(train_err)
        hist["test_error"].append(test_err)
    info.update(hist)
    info.update(epochs=args.epochs, train_size=N, test_size=xte.shape[0],
                best_test_error=min(hist["test_error"]) if hist["test_error"] else None,
                final_test_error=hist["test_error"][-1] if hist["test_error"] else None)
    return info


def shift_batch(x, shift, gen):
    """Each image translated by a random offset in -shift..=shift along each axis, zero filled
    (eqprop's `--shift`)."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
    return torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(offsets.tolist())])


def time_images(model, opt, xtr, ytr, args, device, info):
    bs = args.batch_size
    train_batch(model, opt, xtr[:bs].to(device), ytr[:bs].to(device), args)  # warm-up
    images = 0
    sync(device)
    t0 = time.perf_counter()
    for b in range(math.ceil(args.time_images / bs)):
        lo = (b * bs) % xtr.shape[0]
        x, y = xtr[lo:lo + bs].to(device), ytr[lo:lo + bs].to(device)
        train_batch(model, opt, x, y, args)
        images += x.shape[0]
    sync(device)
    secs = time.perf_counter() - t0
    spi = secs / images
    print(f"timed {images} training images in {secs:.2f} s: {spi * 1e3:.3f} ms per image",
          flush=True)
    info.update(mode="cnn-backprop-time", images=images, seconds=secs, seconds_per_image=spi,
                estimated_epoch_seconds=spi * xtr.shape[0], train_size=xtr.shape[0])
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, batch_size=64, epochs=30)
    ap.add_argument("--act", choices=["relu", "hardsigmoid"], default="relu")
    ap.add_argument("--loss", choices=["ce", "mse"], default="ce")
    ap.add_argument("--out-range", type=lambda v: tuple(float(x) for x in v.split(",")),
                    default=(0.0, 1.0), metavar="LO,HI",
                    help="with --act hardsigmoid --loss mse: the box the output is clamped to")
    ap.add_argument("--optim", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--lr", type=float, default=None,
                    help="default 1e-3 for adam, 0.05 for sgd")
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    ap.add_argument("--shift", type=int, default=0,
                    help="data augmentation: translate each training image by up to N pixels")
    args = ap.parse_args()
    if args.lr is None:
        args.lr = 1e-3 if args.optim == "adam" else 0.05
    emit(run(args), args.json_out)


if __name__ == "__main__":
    main()

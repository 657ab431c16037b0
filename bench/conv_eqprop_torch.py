#!/usr/bin/env python3
"""PyTorch baseline of convolutional Equilibrium Propagation (Laborieux et al. 2021).

Written the way the research code (github.com/Laborieux-Axel/Equilibrium-Propagation,
class P_CNN of model_utils.py) writes it: the network is a primitive function Phi, the
neural dynamics and the weight update are both obtained by autograd of Phi, one Python
loop iteration per time step, float32 tensors.

Network (states stored post-activation, so rho(s) = s for every state):
    s_0 = x (the image, C x H x W, values in [0, 1], never updated)
    s_k = C_k x H_k x W_k for the conv layers, s_L = the n-class output
    Phi(x, s) = sum_k  < s_{k+1}, P(conv_k(s_k) + b_k) >          (conv layers)
              + sum_j  < s_{j+1}, W_j flatten(s_j) + c_j >          (dense layers)
    with P a 2x2 max-pool of stride 2 and rho(u) = clamp(u, 0, 1) (hard sigmoid).
Dynamics: every step sets all layers synchronously to s <- rho(dPhi/ds), where in the
nudged phases Phi gains the term -beta/2 ||s_L - t||^2 (t the one-hot target). Its
fixed points are the box-constrained stationary points of the energy
    E(s) = 1/2 sum_k ||s_k||^2 - Phi(x, s)    (+ beta/2 ||s_L - t||^2 when nudged).
Training step on a batch: T1 free steps from zero states, then from the free fixed point
T2 steps nudged with +beta and (symmetric nudging, the default) T2 steps with -beta;
    grad_theta ~ -(dPhi/dtheta(s+) - dPhi/dtheta(s-)) / (2 beta)   (batch mean)
(one-sided: -(dPhi/dtheta(s+) - dPhi/dtheta(s_free)) / beta), handed to the optimizer
(Adam or SGD) with one learning rate per weight layer. Prediction: argmax of s_L after T1
free steps (also at test time).

Reference settings (defaults): the authors' MNIST ConvNet script
check/train_mnist_cnn.sh of Laborieux-Axel/Equilibrium-Propagation:
    --channels 32 64 --kernels 5 5 --pools 'mm' --strides 1 1 --fc 10 --optim 'adam'
    --lrs 5e-5 1e-5 8e-6 --act 'hard_sigmoid' --betas 0.0 0.4 --T1 200 --T2 10 --mbs 100
(paddings 0, PyTorch's default initialisation, MSE loss). That script nudges one-sided;
our default is the symmetric nudging that is the point of Laborieux et al. 2021
(`--nudging positive` gives the script's variant).

FLOPs per training image (1 multiply-add = 2 FLOPs; elementwise work -- pooling, clamp,
products with the states -- not counted). With M_conv_k = C_{k+1} * Ho_k * Wo_k * C_k * K_k^2
(Ho, Wo the conv output size before pooling) and M_dense_j = n_in_j * n_out_j:
    one step of the dynamics, as autograd does it:
        forward of Phi:               sum_k M_conv_k + sum_j M_dense_j
        backward to the states:       sum_{k>=1} M_conv_k + sum_j M_dense_j
                                      (transposed conv / dense; layer 0's input needs none)
        => S = M_conv_0 + 2 sum_{k>=1} M_conv_k + 2 sum_j M_dense_j multiply-adds
        (conv_0(x) is recomputed every step, as the research code does)
    weight update: Phi forward + backward to the weights at 2 states:
        U = 2 * 2 * (sum_k M_conv_k + sum_j M_dense_j)
    per image: 2 * ((T1 + n_nudged * T2) * S + U) FLOPs, n_nudged = 2 (symmetric) or 1.
Default architecture (1x28x28 -> 32x24x24 -pool-> 32x12x12 -> 64x8x8 -pool-> 64x4x4 -> 10):
    M_conv_0 = 32*24*24*1*25 = 460,800; M_conv_1 = 64*8*8*32*25 = 3,276,800;
    M_dense = 1024*10 = 10,240; S = 7,034,880; U = 14,991,360;
    T1 200, T2 10, symmetric: 2 * (220 * S + U) = 3.125 GFLOP per training image
    (a test image: 2 * T1 * S = 2.81 GFLOP).

The last line printed is always `RESULT {json}` (see bench/README.md for its fields).
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eqprop_torch import load_data  # noqa: E402  (the IDX reader of the MLP baseline)


# ----------------------------------------------------------------------------
# Data and shared helpers (also used by cnn_backprop_torch.py)
# ----------------------------------------------------------------------------

IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28)}


def data_dir_for(args):
    """--data-dir if given, else $EQPROP_DATA_DIR/<dataset>, else /work/shared/data/<dataset>."""
    if args.data_dir:
        return args.data_dir
    root = os.environ.get("EQPROP_DATA_DIR", "/work/shared/data")
    return os.path.join(root, args.dataset)


def load_images(args):
    """(xtr, ytr, xte, yte): images N x C x H x W in [0, 1], labels int64; limits applied."""
    path = data_dir_for(args)
    try:
        xtr, ytr, xte, yte = load_data(path)
    except FileNotFoundError as e:
        sys.exit(f"data file not found: {e.filename} (set --data-dir or $EQPROP_DATA_DIR)")
    shape = IMAGE_SHAPES[args.dataset]
    xtr, xte = xtr.reshape(-1, *shape), xte.reshape(-1, *shape)
    if args.train_limit > 0:
        xtr, ytr = xtr[:args.train_limit], ytr[:args.train_limit]
    if args.test_limit > 0:
        xte, yte = xte[:args.test_limit], yte[:args.test_limit]
    return xtr, ytr, xte, yte


def conv_shapes(in_shape, channels, kernels, paddings):
    """Per conv layer: (C_in, C_out, K, conv output side, pooled side)."""
    c, side, _ = in_shape
    out = []
    for c_out, k, p in zip(channels, kernels, paddings):
        conv_side = side + 2 * p - k + 1
        if conv_side < 2:
            sys.exit(f"--kernels/--paddings: layer {len(out) + 1} leaves a {conv_side}x{conv_side} "
                     "map, too small for the 2x2 pool")
        out.append((c, c_out, k, conv_side, conv_side // 2))
        c, side = c_out, conv_side // 2
    return out


def macs_per_layer(in_shape, channels, kernels, paddings, fc):
    """Multiply-adds of one forward pass: ([conv layers], [dense layers])."""
    shapes = conv_shapes(in_shape, channels, kernels, paddings)
    conv = [c_out * side * side * c_in * k * k for c_in, c_out, k, side, _ in shapes]
    c, side = (shapes[-1][1], shapes[-1][4]) if shapes else (in_shape[0], in_shape[1])
    sizes = [c * side * side] + list(fc)
    dense = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return conv, dense


def check_arch(args):
    n = len(args.channels)
    if len(args.kernels) != n or len(args.paddings) != n:
        sys.exit(f"--channels, --kernels and --paddings need one value per conv layer "
                 f"(got {n}, {len(args.kernels)}, {len(args.paddings)})")
    if not args.fc:
        sys.exit("--fc needs at least the number of classes")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def emit(result, json_out):
    line = json.dumps(result)
    if json_out:
        with open(json_out, "w") as f:
            f.write(line + "\n")
    print("RESULT " + line, flush=True)


def int_list(s):
    return [int(v) for v in s.split(",") if v.strip()]


def float_list(s):
    return [float(v) for v in s.split(",") if v.strip()]


def add_common_args(ap, batch_size, epochs):
    """Flags shared by both conv baselines (architecture, data, run)."""
    ap.add_argument("--dataset", choices=sorted(IMAGE_SHAPES), default="mnist")
    ap.add_argument("--data-dir", default=None,
                    help="folder with the IDX files [default: $EQPROP_DATA_DIR/<dataset>, "
                         "else /work/shared/data/<dataset>]")
    ap.add_argument("--channels", type=int_list, default=[32, 64],
                    help="output channels of each conv layer (each followed by 2x2 max-pool)")
    ap.add_argument("--kernels", type=int_list, default=[5, 5])
    ap.add_argument("--paddings", type=int_list, default=[0, 0])
    ap.add_argument("--fc", type=int_list, default=[10],
                    help="dense layer sizes after the last conv layer; the last is the classes")
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--eval-batch", type=int, default=1000)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--test-limit", type=int, default=0)
    ap.add_argument("--time-images", type=int, default=0,
                    help="only time N training images (after one warm-up batch) and report "
                         "seconds per image")
    ap.add_argument("--json-out", default=None)


def setup(args):
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")
    return torch.device(args.device)


# ----------------------------------------------------------------------------
# The convolutional Hopfield network and its primitive function
# ----------------------------------------------------------------------------

def rho(u):
    """Hard sigmoid: the states live in [0, 1]."""
    return u.clamp(0.0, 1.0)


class ConvEqProp(torch.nn.Module):
    def __init__(self, in_shape, channels, kernels, paddings, fc):
        super().__init__()
        shapes = conv_shapes(in_shape, channels, kernels, paddings)
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(c_in, c_out, k, padding=p, bias=True)
            for (c_in, c_out, k, _, _), p in zip(shapes, paddings))
        c, side = (shapes[-1][1], shapes[-1][4]) if shapes else (in_shape[0], in_shape[1])
        sizes = [c * side * side] + list(fc)
        self.denses = torch.nn.ModuleList(
            torch.nn.Linear(a, b, bias=True) for a, b in zip(sizes[:-1], sizes[1:]))
        self.state_shapes = [(c_out, s, s) for _, c_out, _, _, s in shapes] + [(n,) for n in fc]
        self.n_classes = fc[-1]

    def synapses(self):
        """The weight layers in order (one learning rate each)."""
        return list(self.convs) + list(self.denses)

    def phi(self, x, states, beta=0.0, target=None):
        """Per-example primitive function Phi(x, s) - beta/2 ||s_L - t||^2."""
        layers = [x] + states
        phi = x.new_zeros(x.shape[0])
        for k, conv in enumerate(self.convs):
            pooled = F.max_pool2d(conv(layers[k]), 2, stride=2)
            phi = phi + (pooled * layers[k + 1]).sum(dim=(1, 2, 3))
        n_conv = len(self.convs)
        for j, dense in enumerate(self.denses):
            below = layers[n_conv + j].flatten(1)
            phi = phi + (dense(below) * layers[n_conv + j + 1]).sum(dim=1)
        if beta != 0.0:
            phi = phi - 0.5 * beta * ((states[-1] - target) ** 2).sum(dim=1)
        return phi

    def energy(self, x, states, beta=0.0, target=None):
        """Per-example E = 1/2 sum ||s_k||^2 - Phi (the Lyapunov-like function of the dynamics)."""
        sq = sum(0.5 * (s * s).flatten(1).sum(1) for s in states)
        return sq - self.phi(x, states, beta, target)

    def zero_states(self, batch, device, dtype=torch.float32):
        return [torch.zeros(batch, *shape, device=device, dtype=dtype, requires_grad=True)
                for shape in self.state_shapes]

    def relax(self, x, states, steps, beta=0.0, target=None, create_graph=False):
        """`steps` synchronous steps s <- rho(dPhi/ds) of every layer (autograd of Phi)."""
        for _ in range(steps):
            phi = self.phi(x, states, beta, target).sum()
            grads = torch.autograd.grad(phi, states, create_graph=create_graph)
            if create_graph:
                states = [rho(g) for g in grads]
            else:
                states = [rho(g).detach().requires_grad_() for g in grads]
        return states

    def eqprop_grads(self, x, s_a, beta_a, s_b, beta_b):
        """p.grad = -(dPhi/dp(s_a) - dPhi/dp(s_b)) / (beta_a - beta_b), Phi averaged over the
        batch: the EqProp estimate of dLoss/dp, ready for a minimising optimizer."""
        self.zero_grad(set_to_none=True)
        phi_a = self.phi(x, [s.detach() for s in s_a]).mean()
        phi_b = self.phi(x, [s.detach() for s in s_b]).mean()
        (-(phi_a - phi_b) / (beta_a - beta_b)).backward()


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------

def make_optimizer(net, args):
    layers = net.synapses()
    if len(args.lr) != len(layers):
        sys.exit(f"--lr needs one value per weight layer ({len(layers)}: "
                 f"{len(net.convs)} conv + {len(net.denses)} dense), got {len(args.lr)}")
    groups = [{"params": m.parameters(), "lr": lr} for m, lr in zip(layers, args.lr)]
    if args.optim == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, momentum=args.momentum)


def train_batch(net, opt, x, y, args, gen):
    """One EqProp step on a batch; returns the number of wrong free-phase predictions."""
    target = F.one_hot(y, net.n_classes).to(x.dtype)
    free = net.relax(x, net.zero_states(x.shape[0], x.device, x.dtype), args.t1)
    wrong = (free[-1].detach().argmax(1) != y).sum()
    beta = args.beta
    if args.nudging == "random-sign" and torch.randint(0, 2, (1,), generator=gen).item() == 1:
        beta = -beta
    plus = net.relax(x, free, args.t2, beta, target)
    if args.nudging == "symmetric":
        minus = net.relax(x, free, args.t2, -beta, target)
        net.eqprop_grads(x, plus, beta, minus, -beta)
    else:
        net.eqprop_grads(x, plus, beta, free, 0.0)
    opt.step()
    return wrong


def evaluate(net, xte, yte, args, device):
    """Test error (%) of the prediction after T1 free steps."""
    errors = 0
    for i in range(0, xte.shape[0], args.eval_batch):
        x = xte[i:i + args.eval_batch].to(device)
        y = yte[i:i + args.eval_batch].to(device)
        states = net.relax(x, net.zero_states(x.shape[0], device), args.t1)
        errors += int((states[-1].detach().argmax(1) != y).sum().item())
    return 100.0 * errors / xte.shape[0]


def flops_per_image(net_shape_args, t1, t2, nudged_phases):
    """(FLOPs per training image, FLOPs per test image, MACs per dynamics step); see the
    module docstring for the formula."""
    conv, dense = macs_per_layer(*net_shape_args)
    step = (conv[0] if conv else 0) + 2 * sum(conv[1:]) + 2 * sum(dense)
    if not conv:  # dense only: the first layer's input needs no transposed product
        step = dense[0] + 2 * sum(dense[1:])
    update = 4 * (sum(conv) + sum(dense))
    train = 2 * ((t1 + nudged_phases * t2) * step + update)
    return train, 2 * t1 * step, step


def settings(args, net, device):
    return {
        "dataset": args.dataset, "channels": args.channels, "kernels": args.kernels,
        "paddings": args.paddings, "fc": args.fc, "state_shapes": net.state_shapes,
        "t1": args.t1, "t2": args.t2, "beta": args.beta, "nudging": args.nudging,
        "optim": args.optim, "lr": args.lr, "momentum": args.momentum,
        "batch_size": args.batch_size, "seed": args.seed,
        "threads": torch.get_num_threads(), "device": str(device),
        "torch_version": torch.__version__,
    }


def run(args):
    device = setup(args)
    check_arch(args)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr, xte, yte = load_images(args)
    in_shape = tuple(xtr.shape[1:])
    net = ConvEqProp(in_shape, args.channels, args.kernels, args.paddings, args.fc).to(device)
    opt = make_optimizer(net, args)
    phases = 2 if args.nudging == "symmetric" else 1
    flops_train, flops_test, _ = flops_per_image(
        (in_shape, args.channels, args.kernels, args.paddings, args.fc), args.t1, args.t2, phases)
    info = settings(args, net, device)
    info.update(mode="conv-eqprop", flops_per_train_image=flops_train,
                flops_per_test_image=flops_test)
    print(f"# conv-eqprop {args.dataset} state shapes {net.state_shapes} train {xtr.shape[0]} "
          f"test {xte.shape[0]} batch {args.batch_size} threads {torch.get_num_threads()} "
          f"device {device} torch {torch.__version__}", flush=True)
    print(f"# t1 {args.t1} t2 {args.t2} beta {args.beta} nudging {args.nudging} optim {args.optim} "
          f"lr {args.lr} seed {args.seed}; {flops_train / 1e9:.3f} GFLOP per training image",
          flush=True)
    if args.time_images > 0:
        return time_images(net, opt, xtr, ytr, args, gen, device, info)

    N = xtr.shape[0]
    hist = {"train_seconds_per_epoch": [], "test_error": [], "train_error": [],
            "test_seconds_per_epoch": []}
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(N, generator=gen)
        sync(device)
        t0 = time.perf_counter()
        wrong = 0
        for b, i in enumerate(range(0, N, args.batch_size)):
            idx = perm[i:i + args.batch_size]
            wrong += int(train_batch(net, opt, xtr[idx].to(device), ytr[idx].to(device),
                                     args, gen))
            if args.log_every > 0 and (b + 1) % args.log_every == 0:
                seen = i + idx.shape[0]
                print(f"  epoch {epoch} images {seen}  train_err so far "
                      f"{100.0 * wrong / seen:6.2f}%  {time.perf_counter() - t0:8.1f} s", flush=True)
        sync(device)
        secs = time.perf_counter() - t0
        test_err = evaluate(net, xte, yte, args, device)
        sync(device)
        test_secs = time.perf_counter() - t0 - secs
        train_err = 100.0 * wrong / N
        print(f"epoch {epoch:3d}  train_err {train_err:6.2f}%  test_err {test_err:6.2f}%  "
              f"train_s {secs:8.1f}  test_s {test_secs:8.1f}  s/image {secs / N:.4f}", flush=True)
        hist["train_seconds_per_epoch"].append(secs)
        hist["test_seconds_per_epoch"].append(test_secs)
        hist["train_error"].append(train_err)
        hist["test_error"].append(test_err)
    info.update(hist)
    info.update(epochs=args.epochs, train_size=N, test_size=xte.shape[0],
                best_test_error=min(hist["test_error"]) if hist["test_error"] else None,
                final_test_error=hist["test_error"][-1] if hist["test_error"] else None)
    return info


def time_images(net, opt, xtr, ytr, args, gen, device, info):
    """Seconds per training image over `--time-images` images (one warm-up batch first)."""
    bs = args.batch_size
    warm = xtr[:bs].to(device), ytr[:bs].to(device)
    train_batch(net, opt, *warm, args, gen)
    batches = math.ceil(args.time_images / bs)
    images = 0
    sync(device)
    t0 = time.perf_counter()
    for b in range(batches):
        lo = (b * bs) % xtr.shape[0]
        x, y = xtr[lo:lo + bs].to(device), ytr[lo:lo + bs].to(device)
        train_batch(net, opt, x, y, args, gen)
        images += x.shape[0]
    sync(device)
    secs = time.perf_counter() - t0
    spi = secs / images
    gflops = info["flops_per_train_image"] / spi / 1e9
    print(f"timed {images} training images in {secs:.2f} s: {spi * 1e3:.2f} ms per image, "
          f"{gflops:.1f} GFLOP/s counted; an epoch of {xtr.shape[0]} images ~ "
          f"{spi * xtr.shape[0]:.0f} s", flush=True)
    info.update(mode="conv-eqprop-time", images=images, seconds=secs,
                seconds_per_image=spi, gflops_per_second=gflops,
                estimated_epoch_seconds=spi * xtr.shape[0], train_size=xtr.shape[0])
    return info


# ----------------------------------------------------------------------------
# Self-check: energy descent and EqProp vs BPTT on a tiny net (float64)
# ----------------------------------------------------------------------------

def cosine(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


def check_energy(gen):
    """Free phase of the default net on random images: E should (almost) only go down."""
    net = ConvEqProp((1, 28, 28), [32, 64], [5, 5], [0, 0], [10]).double()
    x = torch.rand(4, 1, 28, 28, generator=gen, dtype=torch.float64)
    states = net.zero_states(4, x.device, torch.float64)
    energies = []
    for _ in range(60):
        energies.append(net.energy(x, states).detach())
        states = net.relax(x, states, 1)
    energies = torch.stack(energies)  # steps x batch
    rises = (energies[1:] - energies[:-1]).clamp(min=0).max(0).values
    span = energies[0] - energies.min(0).values
    drift = (states[-1] - net.relax(x, states, 1)[-1]).detach().abs().max().item()
    print(f"energy check: E(step 0) {energies[0].tolist()}")
    print(f"              E(step 59) {energies[-1].tolist()}")
    print(f"              largest one-step rise / total descent: "
          f"{(rises / span).max().item():.2e}; output change at the last step {drift:.2e}")
    assert bool((energies[-1] < energies[0]).all()), "the free phase did not lower the energy"
    assert bool((rises <= 1e-3 * span).all()), "the energy rose during the free phase"
    return {"energy_first": energies[0].tolist(), "energy_last": energies[-1].tolist(),
            "max_rise_over_descent": (rises / span).max().item()}


def check_gradients(gen, beta=1e-3, t1=60, t2=60):
    """Symmetric EqProp update at small beta vs the loss gradient by BPTT through the free
    phase, on a tiny net (1x14x14 -> 4x6x6 -> 8x2x2 -> 10), float64."""
    torch.manual_seed(1)
    net = ConvEqProp((1, 14, 14), [4, 8], [3, 3], [0, 0], [10]).double()
    x = torch.rand(8, 1, 14, 14, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (8,), generator=gen)
    target = F.one_hot(y, 10).double()
    zeros = net.zero_states(8, x.device, torch.float64)
    # BPTT: the graph of all t1 free steps, loss 1/2 ||s_L - t||^2 averaged over the batch.
    states = net.relax(x, zeros, t1, create_graph=True)
    loss = 0.5 * ((states[-1] - target) ** 2).sum(1).mean()
    params = list(net.parameters())
    bptt = torch.autograd.grad(loss, params)
    # EqProp, symmetric nudging from the free fixed point.
    free = net.relax(x, net.zero_states(8, x.device, torch.float64), t1)
    settle = max((a - b).abs().max().item() for a, b in zip(free, net.relax(x, free, 1)))
    plus = net.relax(x, free, t2, beta, target)
    minus = net.relax(x, free, t2, -beta, target)
    net.eqprop_grads(x, plus, beta, minus, -beta)
    names = [n for n, _ in net.named_parameters()]
    cos = {n: cosine(p.grad, g) for n, p, g in zip(names, params, bptt)}
    total = cosine(torch.cat([p.grad.flatten() for p in params]),
                   torch.cat([g.flatten() for g in bptt]))
    print(f"gradient check (beta {beta}, T1 {t1}, T2 {t2}, free-phase residual {settle:.1e}):")
    for n, c in cos.items():
        print(f"  cos(EqProp, BPTT) {n:16s} {c:.6f}")
    print(f"  cos(EqProp, BPTT) all parameters   {total:.6f}")
    assert all(c > 0.99 for c in cos.values()), "EqProp does not match BPTT (cosine <= 0.99)"
    return {"beta": beta, "t1": t1, "t2": t2, "cosines": cos, "cosine_all": total}


def self_check(args):
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    energy = check_energy(gen)
    grads = check_gradients(gen)
    print("self-check passed", flush=True)
    return {"mode": "conv-eqprop-self-check", "energy": energy, "gradients": grads,
            "torch_version": torch.__version__}


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, batch_size=100, epochs=1)
    ap.add_argument("--t1", type=int, default=200, help="free steps")
    ap.add_argument("--t2", type=int, default=10, help="steps of each nudged phase")
    ap.add_argument("--beta", type=float, default=0.4)
    ap.add_argument("--nudging", choices=["symmetric", "positive", "random-sign"],
                    default="symmetric")
    ap.add_argument("--optim", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--lr", type=float_list, default=[5e-5, 1e-5, 8e-6],
                    help="one learning rate per weight layer (conv layers, then dense)")
    ap.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    ap.add_argument("--log-every", type=int, default=0,
                    help="print the running train error every N batches (0: per epoch only)")
    ap.add_argument("--self-check", action="store_true",
                    help="energy descent and EqProp-vs-BPTT cosines on random data, then exit")
    args = ap.parse_args()
    result = self_check(args) if args.self_check else run(args)
    emit(result, args.json_out)


if __name__ == "__main__":
    main()

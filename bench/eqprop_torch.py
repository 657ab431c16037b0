#!/usr/bin/env python3
"""PyTorch baseline of Equilibrium Propagation (Scellier & Bengio 2017).

Written the way a plain PyTorch user would write it: a Python for-loop over
relaxation steps, full matrix products at every step (the input drive x @ W1
is recomputed every step), float32 torch tensors, no autograd.

Modes:
  eqprop   -- train a layered Hopfield net with EqProp (free + nudged phase)
  backprop -- reference MLP of the same shape (ReLU, cross-entropy, SGD momentum 0.9,
              lr 0.05, batch 20: best of Adam/SGD tried, see bench/README.md)
  relax    -- micro-benchmark: time one free phase of T steps of 784-W-10

The last line printed is always `RESULT {json}` (parsed by the Rust bench).
"""

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    count = int(np.prod(dims))
    return arr[:count].reshape(dims)


def load_data(data_dir):
    def p(name):
        return os.path.join(data_dir, name)

    xtr = read_idx(p("train-images-idx3-ubyte.gz"))
    ytr = read_idx(p("train-labels-idx1-ubyte.gz"))
    xte = read_idx(p("t10k-images-idx3-ubyte.gz"))
    yte = read_idx(p("t10k-labels-idx1-ubyte.gz"))
    xtr = xtr.reshape(xtr.shape[0], -1).astype(np.float32) / 255.0
    xte = xte.reshape(xte.shape[0], -1).astype(np.float32) / 255.0
    return (torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64)),
            torch.from_numpy(xte), torch.from_numpy(yte.astype(np.int64)))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------
# Equilibrium Propagation
# ----------------------------------------------------------------------------

def rho(s):
    return s.clamp(0.0, 1.0)


class EqPropNet:
    def __init__(self, sizes, gen, device):
        self.sizes = sizes
        self.W = []
        self.b = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = math.sqrt(6.0 / (n_in + n_out))
            w = (torch.rand(n_in, n_out, generator=gen) * 2.0 - 1.0) * bound
            self.W.append(w.to(device))
            self.b.append(torch.zeros(n_out, device=device))
        self.device = device

    def zero_states(self, batch):
        return [torch.zeros(batch, n, device=self.device) for n in self.sizes[1:]]

    def relax(self, x, states, steps, eps, beta=0.0, target=None):
        """Synchronous relaxation: all free layers from the old states."""
        L = len(self.W)
        for _ in range(steps):
            new = []
            for k in range(L):
                below = x if k == 0 else states[k - 1]
                drive = rho(below) @ self.W[k] + self.b[k]
                if k + 1 < L:
                    drive = drive + rho(states[k + 1]) @ self.W[k + 1].t()
                h = (1.0 - eps) * states[k] + eps * drive
                if k == L - 1 and beta != 0.0:
                    h = h + eps * beta * (target - states[k])
                new.append(h.clamp(0.0, 1.0))
            states = new
        return states

    def energy(self, x, states):
        """Per-example energy, free layers only (input 1/2 x^2 term excluded)."""
        e = torch.zeros(x.shape[0], device=self.device)
        for s in states:
            e = e + 0.5 * (s * s).sum(1)
        layers = [x] + states
        for k in range(len(self.W)):
            a = rho(layers[k])
            c = rho(layers[k + 1])
            e = e - ((a @ self.W[k]) * c).sum(1) - (c @ self.b[k])
        return e

    def update(self, x, free, nudged, beta, lrs, nudged_neg=None):
        """W_k += lr_k/beta * mean(rho(a_b) rho(c_b)^T - rho(a_0) rho(c_0)^T).

        With nudged_neg (symmetric variant) the +beta and -beta states are used
        and the factor is lr_k / (2 beta)."""
        n = x.shape[0]
        lf = [x] + free
        lb = [x] + nudged
        if nudged_neg is not None:
            l0 = [x] + nudged_neg
            scale = 1.0 / (2.0 * beta)
        else:
            l0 = lf
            scale = 1.0 / beta
        for k in range(len(self.W)):
            a_b, c_b = rho(lb[k]), rho(lb[k + 1])
            a_0, c_0 = rho(l0[k]), rho(l0[k + 1])
            dW = (a_b.t() @ c_b - a_0.t() @ c_0) / n
            db = (c_b - c_0).mean(0)
            self.W[k] += lrs[k] * scale * dW
            self.b[k] += lrs[k] * scale * db


def evaluate_eqprop(net, xte, yte, args, device):
    errors = 0
    energy_sum = 0.0
    n = xte.shape[0]
    for i in range(0, n, args.eval_batch):
        x = xte[i:i + args.eval_batch].to(device)
        y = yte[i:i + args.eval_batch].to(device)
        states = net.relax(x, net.zero_states(x.shape[0]), args.t1, args.eps)
        pred = states[-1].argmax(1)
        errors += int((pred != y).sum().item())
        energy_sum += float(net.energy(x, states).sum().item())
    return 100.0 * errors / n, energy_sum / n


def run_eqprop(args, device, data):
    torch.set_grad_enabled(False)
    xtr, ytr, xte, yte = data
    gen = torch.Generator().manual_seed(args.seed)
    sizes = args.layers
    assert sizes[0] == xtr.shape[1], "first layer must match input size"
    lrs = args.lr
    assert len(lrs) == len(sizes) - 1, "--lr needs one value per weight layer"
    net = EqPropNet(sizes, gen, device)
    xtr_d, ytr_d = xtr.to(device), ytr.to(device)
    N = xtr.shape[0]
    n_out = sizes[-1]
    persist = None
    if args.persistent:
        persist = [torch.zeros(N, n, device=device) for n in sizes[1:]]

    hist = {"train_seconds_per_epoch": [], "test_error": [], "train_error": [],
            "free_energy": [], "samples_per_second": []}
    for epoch in range(1, args.epochs + 1):
        total = N * args.train_repeat
        perm = torch.randperm(total, generator=gen) % N
        sync(device)
        t0 = time.perf_counter()
        wrong = torch.zeros((), dtype=torch.int64, device=device)
        for i in range(0, total, args.batch_size):
            idx = perm[i:i + args.batch_size].to(device)
            x = xtr_d[idx]
            y = ytr_d[idx]
            bsz = x.shape[0]
            target = torch.nn.functional.one_hot(y, n_out).float()
            if persist is not None:
                init = [p[idx] for p in persist]
            else:
                init = net.zero_states(bsz)
            free = net.relax(x, init, args.t1, args.eps)
            if persist is not None:
                for p, s in zip(persist, free):
                    p[idx] = s
            wrong += (free[-1].argmax(1) != y).sum()
            beta = args.beta
            if args.random_sign and torch.randint(0, 2, (1,), generator=gen).item() == 1:
                beta = -beta
            nudged = net.relax(x, free, args.t2, args.eps, beta, target)
            if args.symmetric:
                nudged_neg = net.relax(x, free, args.t2, args.eps, -beta, target)
                net.update(x, free, nudged, beta, lrs, nudged_neg)
            else:
                net.update(x, free, nudged, beta, lrs)
        sync(device)
        secs = time.perf_counter() - t0
        train_err = 100.0 * int(wrong.item()) / total
        if args.eval_every_epoch or epoch == args.epochs:
            test_err, energy = evaluate_eqprop(net, xte, yte, args, device)
        else:
            test_err, energy = float("nan"), float("nan")
        sps = total / secs
        print(f"epoch {epoch:3d}  train_err {train_err:6.2f}%  test_err {test_err:6.2f}%  "
              f"free_energy {energy:9.4f}  train_s {secs:8.2f}  samples/s {sps:9.1f}",
              flush=True)
        hist["train_seconds_per_epoch"].append(secs)
        hist["train_error"].append(train_err)
        hist["test_error"].append(test_err)
        hist["free_energy"].append(energy)
        hist["samples_per_second"].append(sps)
    return hist


# ----------------------------------------------------------------------------
# Backprop reference
# ----------------------------------------------------------------------------

def run_backprop(args, device, data):
    xtr, ytr, xte, yte = data
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    sizes = args.layers
    mods = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(torch.nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods).to(device)
    if args.bp_optim == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.bp_lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.bp_lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    xtr_d, ytr_d = xtr.to(device), ytr.to(device)
    xte_d, yte_d = xte.to(device), yte.to(device)
    N = xtr.shape[0]
    hist = {"train_seconds_per_epoch": [], "test_error": [], "train_error": [],
            "free_energy": [], "samples_per_second": []}
    for epoch in range(1, args.epochs + 1):
        total = N * args.train_repeat
        perm = torch.randperm(total, generator=gen) % N
        model.train()
        sync(device)
        t0 = time.perf_counter()
        wrong = torch.zeros((), dtype=torch.int64, device=device)
        for i in range(0, total, args.batch_size):
            idx = perm[i:i + args.batch_size].to(device)
            x, y = xtr_d[idx], ytr_d[idx]
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            wrong += (out.detach().argmax(1) != y).sum()
        sync(device)
        secs = time.perf_counter() - t0
        train_err = 100.0 * int(wrong.item()) / total
        model.eval()
        with torch.no_grad():
            errs = 0
            for i in range(0, xte_d.shape[0], args.eval_batch):
                pred = model(xte_d[i:i + args.eval_batch]).argmax(1)
                errs += int((pred != yte_d[i:i + args.eval_batch]).sum().item())
        test_err = 100.0 * errs / xte_d.shape[0]
        sps = total / secs
        print(f"epoch {epoch:3d}  train_err {train_err:6.2f}%  test_err {test_err:6.2f}%  "
              f"train_s {secs:8.2f}  samples/s {sps:9.1f}", flush=True)
        hist["train_seconds_per_epoch"].append(secs)
        hist["train_error"].append(train_err)
        hist["test_error"].append(test_err)
        hist["free_energy"].append(None)
        hist["samples_per_second"].append(sps)
    return hist


# ----------------------------------------------------------------------------
# Relaxation micro-benchmark
# ----------------------------------------------------------------------------

def run_relax(args, device):
    torch.set_grad_enabled(False)
    gen = torch.Generator().manual_seed(args.seed)
    net = EqPropNet([784, args.width, 10], gen, device)
    x = torch.rand(args.batch, 784, generator=gen).to(device)
    times = []
    for r in range(args.repeats + 1):  # first run is the warm-up
        sync(device)
        t0 = time.perf_counter()
        states = net.relax(x, net.zero_states(args.batch), args.steps, args.eps)
        sync(device)
        dt = time.perf_counter() - t0
        if r > 0:
            times.append(dt)
    times.sort()
    med = times[len(times) // 2]
    print(f"relax 784-{args.width}-10 batch {args.batch} steps {args.steps}: "
          f"median {med * 1e3:.3f} ms over {len(times)} repeats "
          f"(min {times[0] * 1e3:.3f} ms)", flush=True)
    del states
    return {"mode": "relax", "seconds": med, "width": args.width,
            "batch": args.batch, "steps": args.steps, "repeats": len(times),
            "threads": torch.get_num_threads(), "device": str(device),
            "torch_version": torch.__version__}


def run_relax_grid(args, device):
    """relax() for every width x batch x steps of the grid, one process, one RESULT."""
    rows = []
    for width in args.widths:
        for batch in args.batches:
            for steps in args.steps_list:
                args.width, args.batch, args.steps = width, batch, steps
                rows.append(run_relax(args, device))
    return {"mode": "relax-grid", "rows": rows, "device": str(device),
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
            "torch_version": torch.__version__}


# ----------------------------------------------------------------------------

def int_list(s):
    return [int(v) for v in s.split(",") if v.strip()]


def float_list(s):
    return [float(v) for v in s.split(",") if v.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["eqprop", "backprop", "relax", "relax-grid"],
                    default="eqprop")
    ap.add_argument("--data-dir", default="/work/shared/data/mnist")
    ap.add_argument("--layers", type=int_list, default=[784, 500, 10])
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--t1", type=int, default=20)
    ap.add_argument("--t2", type=int, default=4)
    ap.add_argument("--eps", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--lr", type=float_list, default=[0.1, 0.05],
                    help="eqprop: one learning rate per weight layer")
    ap.add_argument("--random-sign", action="store_true")
    ap.add_argument("--symmetric", action="store_true")
    ap.add_argument("--persistent", action="store_true")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--eval-every-epoch", dest="eval_every_epoch", action="store_true",
                    default=True)
    ap.add_argument("--no-eval-every-epoch", dest="eval_every_epoch", action="store_false")
    ap.add_argument("--eval-batch", type=int, default=1000)
    ap.add_argument("--train-repeat", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--test-limit", type=int, default=0)
    ap.add_argument("--json-out", default=None)
    # backprop reference
    ap.add_argument("--bp-optim", choices=["adam", "sgd"], default="sgd")
    ap.add_argument("--bp-lr", type=float, default=None,
                    help="default 1e-3 for adam, 0.05 for sgd (momentum 0.9)")
    # relax micro-benchmark
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    # relax-grid: every combination of these
    ap.add_argument("--widths", type=int_list, default=[500, 2048, 4096])
    ap.add_argument("--batches", type=int_list, default=[1, 20, 256])
    ap.add_argument("--steps-list", dest="steps_list", type=int_list, default=[24, 100])
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")
    device = torch.device(args.device)
    if args.bp_lr is None:
        args.bp_lr = 1e-3 if args.bp_optim == "adam" else 0.05

    if args.mode == "relax":
        result = run_relax(args, device)
    elif args.mode == "relax-grid":
        result = run_relax_grid(args, device)
    else:
        data = load_data(args.data_dir)
        xtr, ytr, xte, yte = data
        if args.train_limit > 0:
            xtr, ytr = xtr[:args.train_limit], ytr[:args.train_limit]
        if args.test_limit > 0:
            xte, yte = xte[:args.test_limit], yte[:args.test_limit]
        data = (xtr, ytr, xte, yte)
        print(f"# mode {args.mode} layers {args.layers} train {xtr.shape[0]}x{args.train_repeat} "
              f"test {xte.shape[0]} batch {args.batch_size} threads {torch.get_num_threads()} "
              f"device {device} torch {torch.__version__}", flush=True)
        if args.mode == "eqprop":
            print(f"# t1 {args.t1} t2 {args.t2} eps {args.eps} beta {args.beta} lr {args.lr} "
                  f"random_sign {args.random_sign} symmetric {args.symmetric} "
                  f"persistent {args.persistent} seed {args.seed}", flush=True)
            hist = run_eqprop(args, device, data)
        else:
            print(f"# optimizer {args.bp_optim} lr {args.bp_lr} seed {args.seed}", flush=True)
            hist = run_backprop(args, device, data)
        finite = [e for e in hist["test_error"] if e == e]
        result = {
            "mode": args.mode,
            "epochs": args.epochs,
            "train_seconds_per_epoch": hist["train_seconds_per_epoch"],
            "test_error": [e if e == e else None for e in hist["test_error"]],
            "train_error": hist["train_error"],
            "best_test_error": min(finite) if finite else None,
            "final_test_error": hist["test_error"][-1] if hist["test_error"] else None,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "torch_version": torch.__version__,
            # extra fields (not required by the Rust parser)
            "free_energy": [e if (e is None or e == e) else None for e in hist["free_energy"]],
            "samples_per_second": hist["samples_per_second"],
            "layers": args.layers,
            "batch_size": args.batch_size,
        }
    line = json.dumps(result)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")
    print("RESULT " + line, flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reruns the cheap figures of the README and its pages (about 10 minutes on a 2-core machine
that also ran other work; `--slow` adds the longer continual runs, the agent seeds 1-4, the lives of seed 0 and the
dream figures)
and prints each one next to the written one.

    cargo build --release && python3 tools/readme_figures.py [--eqprop target/release/eqprop]

Every MNIST command uses `--train-limit 10000`, the first 10,000 training images, which the
MNIST figures were measured on (the official 60,000-image file and the 10,000-image
subset give the same runs with it). The data come from EQPROP_DATA_DIR or the download cache, as
for any eqprop command. Each figure's text is looked up in the pages that hold figures (README.md,
docs/*.md, BENCHMARKS.md: `PAGES`), so a figure that changed there without changing here is
reported too, with the page it was found on. Exits 1 if any figure differs.

Figures are deterministic for a given host, but the matrix products of the `gemm` crate (the
continual-learning decoder, the judge) pick their kernels by the CPU's vector instructions, so
hosts with and without AVX-512 can differ in those; the script prints which one it runs on.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MNIST = ["--train-limit", "10000"]
# The pages whose text holds the figures.
PAGES = ["README.md", "docs/*.md", "BENCHMARKS.md"]


def pages():
    """Each page's path (relative to the root) and text, in the order of `PAGES`."""
    return [(str(path.relative_to(ROOT)), path.read_text()) for pattern in PAGES for path in sorted(ROOT.glob(pattern))]


def page_of(text, texts):
    """The first page that holds `text`, or None."""
    return next((name for name, page in texts if text in page), None)


def runs(tmp):
    """name -> (eqprop arguments, what to read: 'metrics' (the run's metrics.jsonl) or 'stdout')."""
    out = lambda name: ["--out", str(tmp / name)]
    train = lambda name, *a: (["train", *MNIST, *a, *out(name)], "metrics")
    continual = lambda name, *a: (["continual", *a, *out(name)], "stdout")
    return {
        "best-1": train("best-1"),
        "best-2": train("best-2", "--seed", "2"),
        "best-3": train("best-3", "--seed", "3"),
        "paper": train("paper", "--preset", "paper"),
        "paper-2x": train("paper-2x", "--preset", "paper", "--lr", "0.2,0.1"),
        "gate": train("gate", "--gate"),
        "paper-30": train("paper-30", "--preset", "paper", "--epochs", "30"),
        **{f"paper-30-x{k}": train(f"paper-30-x{k}", "--preset", "paper", "--epochs", "30", "--lr", lr)
           for k, lr in [(2, "0.2,0.1"), (3, "0.3,0.15"), (4, "0.4,0.2"), (6, "0.6,0.3"), (8, "0.8,0.4")]},
        "batch-5": train("batch-5", "--preset", "paper", "--epochs", "30", "--batch-size", "5", "--lr", "0.2,0.1"),
        "symmetric": train("symmetric", "--nudging", "symmetric"),
        "symmetric-half": train("symmetric-half", "--nudging", "symmetric", "--beta", "0.5"),
        "cosine": train("cosine", "--cosine-to", "0.05"),
        "targets": train("targets", "--target-off", "0.05", "--target-on", "0.95"),
        "t-free-40": train("t-free-40", "--t-free", "40"),
        "fashion": (["train", "--dataset", "fashion-mnist", *out("fashion")], "metrics"),
        "class-dreams": continual("cd", *MNIST),
        "class-none": continual("cn", *MNIST, "--replay", "none"),
        "class-real": continual("cr", *MNIST, "--replay", "real"),
        "class-joint": continual("cj", *MNIST, "--replay", "joint"),
        "task-dreams": continual("td", *MNIST, "--scenario", "task"),
        "domain-dreams": continual("dd", *MNIST, "--scenario", "domain"),
        "fashion-class-dreams": continual("fcd", "--protocol", "split-fashion-mnist"),
        "task-none": continual("tn", *MNIST, "--scenario", "task", "--replay", "none"),
        "task-real": continual("tr", *MNIST, "--scenario", "task", "--replay", "real"),
        "domain-none": continual("dn", *MNIST, "--scenario", "domain", "--replay", "none"),
        "domain-real": continual("dr", *MNIST, "--scenario", "domain", "--replay", "real"),
        **{f"fashion-{sc}-{rp}": continual(f"f{sc}{rp}", "--protocol", "split-fashion-mnist", "--scenario", sc,
                                           "--replay", rp)
           for sc, rp in [("class", "none"), ("class", "real"), ("class", "joint"), ("task", "none"),
                          ("task", "dreams"), ("domain", "none"), ("domain", "dreams")]},
        **{f"{env}-{seed}": (["agent", "--env", f"{env}-v1", "--seed", str(seed), "--no-gif", *out(f"a{env}{seed}")],
                             "stdout") for env in ("cartpole", "pendulum") for seed in (1, 2, 3, 4)},
        **{f"{env}-random": (["agent", "--env", f"{env}-v1", "--model", "random", "--seed", "0", "--no-gif",
                              *out(f"r{env}")], "stdout") for env in ("cartpole", "pendulum")},
        "judge": (["judge", *MNIST, "--out", str(tmp / "judge.safetensors")], "stdout"),
        "generative": train("generative", "--generative"),
        "dreams": (["dream", "--checkpoint", str(tmp / "generative/checkpoint.safetensors"), "--samples", "100",
                    "--judge", str(tmp / "judge.safetensors"), *MNIST, "--out", str(tmp / "dreams.png")], "stdout"),
        "dreams-unsilenced": (["dream", "--checkpoint", str(tmp / "generative/checkpoint.safetensors"),
                               "--samples", "100", "--silence", "0", "--judge", str(tmp / "judge.safetensors"),
                               *MNIST, "--out", str(tmp / "dreams-0.png")], "stdout"),
        "cartpole": (["agent", "--env", "cartpole-v1", "--seed", "0", "--no-gif", *out("ac")], "stdout"),
        "pendulum": (["agent", "--env", "pendulum-v1", "--seed", "0", "--no-gif", *out("ap")], "stdout"),
        "random-cartpole": (["env", "random", "--env", "cartpole-v1", "--episodes", "1000"], "stdout"),
        "random-pendulum": (["env", "random", "--env", "pendulum-v1", "--episodes", "100"], "stdout"),
        **{f"life-{env}": (["life", "--env", f"{env}-v1", "--seed", "0", "--no-gif", *out(f"l{env}")], "stdout")
           for env in ("cartpole", "pendulum")},
        "replay-worlds": (["env", "replay", "tests/fixtures/gym_cartpole_worlds.json"], "stdout"),
        "replay-cartpole": (["env", "replay", "tests/fixtures/gym_cartpole.json"], "stdout"),
        "replay-pendulum": (["env", "replay", "tests/fixtures/gym_pendulum.json"], "stdout"),
    }


def epoch(n, key, fmt="{:.2f}%"):
    """The value `key` of epoch n (-1: the last) of a training run, formatted."""
    return lambda m: fmt.format(m[n][key])


def match(pattern, fmt="{}"):
    """The first group of `pattern` in a command's output, formatted."""
    return lambda text: fmt.format(re.search(pattern, text).group(1))


AVERAGE = match(r"average accuracy ([0-9.]+)%", "{}%")

# (what, the text on a page that holds it, run, how to read it from the run)
FIGURES = [
    ("train: epoch 1 test error", "test error   7.52%", "best-1", epoch(0, "test_error", "test error   {:.2f}%")),
    ("train: epoch 30 test error", "test error   3.93%", "best-1", epoch(-1, "test_error", "test error   {:.2f}%")),
    ("train: epoch 30 free energy", "free energy -14.3056", "best-1", epoch(-1, "mean_free_energy", "free energy {:.4f}")),
    ("best, seeds 1/2/3, final test error", "**3.93% / 4.04% / 3.94%**", ("best-1", "best-2", "best-3"),
     lambda m1, m2, m3: "**" + " / ".join(f"{m[-1]['test_error']:.2f}%" for m in (m1, m2, m3)) + "**"),
    ("best, seeds 1/2/3, best during the run", "3.89% / 3.81% / 3.80%", ("best-1", "best-2", "best-3"),
     lambda *ms: " / ".join(f"{min(e['test_error'] for e in m):.2f}%" for m in ms)),
    ("paper preset, final and best test error", "| 6.26% | 5.73% |", "paper",
     lambda m: f"| {m[-1]['test_error']:.2f}% | {min(e['test_error'] for e in m):.2f}% |"),
    ("paper with lr 0.2,0.1, final and best test error", "| 4.83% | 4.79% |", "paper-2x",
     lambda m: f"| {m[-1]['test_error']:.2f}% | {min(e['test_error'] for e in m):.2f}% |"),
    ("ablation: paper settings, 30 epochs", "| paper settings | 6.03% |", "paper-30",
     epoch(-1, "test_error", "| paper settings | {:.2f}% |")),
    ("ablation: learning rates x2 / x3 / x4 / x6 / x8", "| 4.75 / 4.70 / 4.53 / 4.10 / 3.80% |",
     tuple(f"paper-30-x{k}" for k in (2, 3, 4, 6, 8)),
     lambda *ms: "| " + " / ".join(f"{m[-1]['test_error']:.2f}" for m in ms) + "% |"),
    ("ablation: batch 5 with lr x2", "| batch 5 with lr x2 | 4.07% |", "batch-5",
     epoch(-1, "test_error", "| batch 5 with lr x2 | {:.2f}% |")),
    ("ablation: symmetric 1 / 0.5, cosine, targets, T1 = 40", "| 3.86 / 4.01 / 3.71 / 3.94 / 3.86% ",
     ("symmetric", "symmetric-half", "cosine", "targets", "t-free-40"),
     lambda *ms: "| " + " / ".join(f"{m[-1]['test_error']:.2f}" for m in ms) + "% "),
    ("gate: final test error", "test error is **4.04%", "gate", epoch(-1, "test_error", "test error is **{:.2f}%")),
    ("Fashion-MNIST, 20 epochs, test accuracy", "EqProp 89.06% test accuracy", "fashion",
     lambda m: f"EqProp {100 - m[-1]['test_error']:.2f}% test accuracy"),
    ("Split-MNIST class, dreams", "**91.74%**", "class-dreams", lambda t: f"**{AVERAGE(t)}**"),
    ("Split-MNIST class, none", "| 20.70% |", "class-none", lambda t: f"| {AVERAGE(t)} |"),
    ("Split-MNIST class, real", "95.64%", "class-real", AVERAGE),
    ("Split-MNIST class, joint", "95.56% |", "class-joint", lambda t: f"{AVERAGE(t)} |"),
    ("Split-MNIST task, dreams", "**98.60%**", "task-dreams", lambda t: f"**{AVERAGE(t)}**"),
    ("Split-MNIST domain, dreams", "62.16% | 95.56%", "domain-dreams", lambda t: f"62.16% | {AVERAGE(t)}"),
    ("Split-Fashion-MNIST class, dreams", "| 81.40% |", "fashion-class-dreams", lambda t: f"| {AVERAGE(t)} |"),
    ("judge: MNIST test accuracy", "--out judge.safetensors                   # 98.77%", "judge",
     lambda t: f"--out judge.safetensors                   # {float(re.search(r'test accuracy ([0-9.]+)%', t).group(1)):.2f}%"),
    ("agent: CartPole mean length", "mean length 500.0 of 500 after 3,000 steps (seed 0", "cartpole",
     match(r"mean length ([0-9.]+)", "mean length {} of 500 after 3,000 steps (seed 0")),
    ("agent: Pendulum mean return", "mean return -225.6 after 4,000 steps (seed 0", "pendulum",
     lambda t: f"mean return {float(re.search(r'mean return (-?[0-9.]+)', t).group(1)):.1f} after 4,000 steps (seed 0"),
    ("agent: CartPole one-step error", "| 0 | 500.0 | 0.0086 | 0.0067 0.0032 0.0151 0.0030 | 0.0154 |", "cartpole",
     lambda t: AGENT_ROW(t, 0, LENGTH)),
    ("agent: Pendulum one-step error", "| 0 | -225.62 | 0.0245 | 0.0305 0.0255 0.0149 | 0.0434 |", "pendulum",
     lambda t: AGENT_ROW(t, 0, RETURN2)),
    ("env random: CartPole mean length", "mean length 22.0", "random-cartpole",
     lambda t: f"mean length {float(re.search(r'mean length ([0-9.]+)', t).group(1)):.1f}"),
    ("env random: Pendulum mean return", "mean return -1181.3", "random-pendulum",
     lambda t: f"mean return {float(re.search(r'mean return (-?[0-9.]+)', t).group(1)):.1f}"),
    ("env replay: the changed CartPole worlds", "13925 values compared, 0 mismatching", "replay-worlds",
     match(r"(\d+ values compared, \d+ mismatching)")),
    ("env replay: CartPole", "9671 values compared, 0 mismatching", "replay-cartpole",
     match(r"(\d+ values compared, \d+ mismatching)")),
    ("env replay: Pendulum", "11221 values compared, 0 mismatching", "replay-pendulum",
     match(r"(\d+ values compared, \d+ mismatching)")),
]


def row():
    """A table row of the averages of continual runs (empty cells for missing ones)."""
    return lambda *texts: "| " + " | ".join(AVERAGE(t) for t in texts) + " |" + " |" * (4 - len(texts))


LENGTH = lambda t: f"{float(re.search(r'mean length ([0-9.]+)', t).group(1)):.1f}"
RETURN = lambda t: f"{float(re.search(r'mean return (-?[0-9.]+)', t).group(1)):.1f}"
RETURN2 = lambda t: f"{float(re.search(r'mean return (-?[0-9.]+)', t).group(1)):.2f}"


def AGENT_ROW(text, seed, score):
    """The start of a seed's row in docs/agent.md's tables: the score, the one-step error, per
    component and in the evaluation's own units."""
    error = re.search(r"evaluation episodes, .*one-step error ([0-9.]+)", text).group(1)
    parts = re.search(r"per component: ([0-9. ]+)", text).group(1).strip()
    own = re.search(r"\(pooled ([0-9.]+)\)", text).group(1)
    return f"| {seed} | {score(text)} | {error} | {parts} | {own} |"

# The rows of docs/agent.md's seed tables that the slow figures rerun.
CARTPOLE_ROWS = {
    1: '| 1 | 500.0 | 0.0218 | 0.0416 0.0027 0.0104 0.0067 | 0.0539 |',
    2: '| 2 | 500.0 | 0.0133 | 0.0065 0.0078 0.0245 0.0029 | 0.0223 |',
    3: '| 3 | 500.0 | 0.0098 | 0.0153 0.0030 0.0111 0.0043 | 0.0188 |',
    4: '| 4 | 498.2 | 0.0120 | 0.0145 0.0045 0.0183 0.0038 | 0.0210 |',
}
PENDULUM_ROWS = {
    1: '| 1 | -136.84 | 0.0133 | 0.0151 0.0133 0.0113 | 0.0277 |',
    2: '| 2 | -148.26 | 0.0121 | 0.0140 0.0139 0.0069 | 0.0269 |',
    3: '| 3 | -158.70 | 0.0195 | 0.0234 0.0229 0.0080 | 0.0373 |',
    4: '| 4 | -217.67 | 0.0180 | 0.0190 0.0195 0.0151 | 0.0343 |',
}

# Figures that take longer (about 3 minutes more): `--slow`.
ALL_ROW = re.compile(r"\| all \| ([0-9.]+)% \| ([0-9.]+) \|")
SLOW_FIGURES = [
    ("life: CartPole seed 0, world 1 after the last world",
     "world 1 at the end: mean length 500.0, mean return 500.00, one-step error 0.0529, 1.28x the error right after it was learned (0.0413)",
     "life-cartpole", match(r"(world 1 at the end: [^\n]*)")),
    ("life: Pendulum seed 0, world 1 after the last world",
     "world 1 at the end: mean length 200.0, mean return -220.64, one-step error 0.0746, 1.15x the error right after it was learned (0.0649)",
     "life-pendulum", match(r"(world 1 at the end: [^\n]*)")),
    ("Split-MNIST task: none, dreams, real", "| 83.60% | **98.60%** | 99.13% | |",
     ("task-none", "task-dreams", "task-real"),
     lambda a, b, c: f"| {AVERAGE(a)} | **{AVERAGE(b)}** | {AVERAGE(c)} | |"),
    ("Split-MNIST domain: none, dreams, real", "| 62.16% | 95.56% | 97.25% | |",
     ("domain-none", "domain-dreams", "domain-real"), row()),
    ("Split-Fashion-MNIST class: none, dreams, real, joint", "| 19.98% | 81.40% | 85.71% | 87.31% |",
     ("fashion-class-none", "fashion-class-dreams", "fashion-class-real", "fashion-class-joint"), row()),
    ("Split-Fashion-MNIST task: none, dreams", "| 79.82% | 98.61% | | |",
     ("fashion-task-none", "fashion-task-dreams"), row()),
    ("Split-Fashion-MNIST domain: none, dreams", "| 77.02% | 96.84% | | |",
     ("fashion-domain-none", "fashion-domain-dreams"), row()),
    *((f"agent: CartPole, seed {s}", CARTPOLE_ROWS[s], f"cartpole-{s}", lambda t, s=s: AGENT_ROW(t, s, LENGTH))
      for s in (1, 2, 3, 4)),
    *((f"agent: Pendulum, seed {s}", PENDULUM_ROWS[s], f"pendulum-{s}", lambda t, s=s: AGENT_ROW(t, s, RETURN2))
      for s in (1, 2, 3, 4)),
    ("agent: random policy, CartPole", "500.0 | 22.9 |", "cartpole-random", lambda t: f"500.0 | {LENGTH(t)} |"),
    ("agent: random policy, Pendulum", "-210.62 | -1353.69 |", "pendulum-random",
     lambda t: f"-210.62 | {RETURN2(t)} |"),
    ("dreams: generative training, final test error", "end at **4.26%** test", "generative",
     epoch(-1, "test_error", "end at **{:.2f}%** test")),
    ("dreams: recognised by the judge", "assigns **97.3%** of the dreams", ("judge", "dreams"),
     lambda _, t: f"assigns **{ALL_ROW.search(t).group(1)}%** of the dreams"),
    ("dreams: diversity", "diversity **0.53**", ("judge", "dreams"),
     lambda _, t: f"diversity **{ALL_ROW.search(t).group(2)}**"),
    ("dreams without silencing", "(100% recognised, diversity 0.12)", ("judge", "dreams-unsilenced"),
     lambda _, t: "({:.0f}% recognised, diversity {:.2f})".format(*map(float, ALL_ROW.search(t).groups()))),
]


def run(eqprop, args, read, tmp):
    started = time.time()
    proc = subprocess.run([eqprop, *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"eqprop {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    print(f"  ran eqprop {' '.join(args)} ({time.time() - started:.0f} s)", file=sys.stderr)
    if read == "stdout":
        return proc.stdout
    out = pathlib.Path(args[args.index("--out") + 1])
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eqprop", default=str(ROOT / "target/release/eqprop"))
    parser.add_argument("--slow", action="store_true", help="also the dream figures (3 more minutes)")
    parser.add_argument("--pages-only", action="store_true",
                        help="run nothing: only check that every figure's text (the slow ones too) is on a page")
    args = parser.parse_args()
    figures = FIGURES + (SLOW_FIGURES if args.slow else [])
    texts = pages()
    if args.pages_only:
        missing = [what for what, text, _, _ in FIGURES + SLOW_FIGURES if page_of(text, texts) is None]
        for what, text, _, _ in FIGURES + SLOW_FIGURES:
            print(f"{what}: {page_of(text, texts) or 'ON NO PAGE'}")
        print(f"{len(FIGURES + SLOW_FIGURES) - len(missing)} of {len(FIGURES + SLOW_FIGURES)} figures are on a page")
        sys.exit(1 if missing else 0)
    flags = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "neither AVX2 nor AVX-512"
    print(f"host: {isa}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        table = runs(tmp)
        results = {}
        rows, bad = [], 0
        for what, text, names, read in figures:
            names = names if isinstance(names, tuple) else (names,)
            for name in names:
                if name not in results:
                    results[name] = run(args.eqprop, *table[name], tmp)
            measured = read(*(results[n] for n in names))
            page = page_of(text, texts)
            ok = page is not None and measured == text
            bad += not ok
            note = f" ({page})" if page else " (on no page)"
            cells = [t.replace("\n", " ") for t in (text, measured)]
            rows.append(f"| {what} | `{cells[0]}`{note} | `{cells[1]}` | {'yes' if ok else 'NO'} |")
    print("| figure | written | measured | same |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    print(f"{len(figures) - bad} of {len(figures)} figures reproduce on this host ({isa})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

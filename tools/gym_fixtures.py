#!/usr/bin/env python3
"""Record reference episodes from real Gymnasium for tests/env_gym.rs.

Usage: python tools/gym_fixtures.py [OUT_DIR]   (default: tests/fixtures)

Writes gym_cartpole.json and gym_pendulum.json (Gymnasium's own physics), and
gym_cartpole_worlds.json and gym_pendulum_worlds.json (the changed worlds of `eqprop life`, one
fixture per world in a JSON list), each fixture one JSON object:

    {
      "env_id": "CartPole-v1" | "Pendulum-v1",
      "gymnasium_version": "1.x.y", "numpy_version": "2.x.y",
      "max_episode_steps": 500 | 200,
      "physics": {"length": 1.0, ...},   # only for a changed world: the constants set
      "format": "...",            # this description, abbreviated
      "episodes": [
        {
          "seed": 3,                   # seed passed to env.reset(seed=...)
          "policy": "random",          # how the actions were chosen (informational)
          "initial_state": ["0x1.9ap-6", ...],   # env.unwrapped.state after reset, float64 as float.hex()
          "initial_obs": [0.0123, ...],          # float32 observation from reset, written as repr(float(v))
          "steps_after_termination": 0,          # steps taken after terminated=True was first returned
          "steps": [
            [action, [state...], [obs...], reward, terminated, truncated],
            ...
          ]
        }, ...
      ]
    }

Per step: `action` is the int (CartPole) or the float32 torque written as repr(float(v)) (Pendulum;
the array passed to step() is np.array([v], dtype=np.float32)); `state` is env.unwrapped.state after
the step, float64 as float.hex(); `obs` the float32 observation, each value written as
repr(float(v)) (exact: float32 -> float64 is exact and repr round-trips); `reward` float.hex() of
the float64 reward; `terminated`, `truncated` booleans as the TimeLimit-wrapped env returns them.
Every episode runs until terminated or truncated (plus `steps_after_termination` further steps,
which exercises Gymnasium's "step after terminated" path).
"""

import json
import os
import sys
import warnings

import gymnasium as gym
import numpy as np

FORMAT = (
    "episodes[].steps[] = [action, state(float64 hex), obs(float32 as repr), reward(hex), "
    "terminated, truncated]; initial_state after reset (hex). See tools/gym_fixtures.py."
)


def f32(v):
    return repr(float(np.float32(v)))


def make_world(env_id, physics):
    """gym.make(env_id) with the constants in `physics` overwritten on the unwrapped env, as a
    user changes a world; CartPole's derived total_mass and polemass_length are recomputed, as
    its __init__ computes them."""
    env = gym.make(env_id)
    u = env.unwrapped
    for name, value in physics.items():
        assert hasattr(u, name), name
        setattr(u, name, float(value))
    if env_id.startswith("CartPole"):
        u.total_mass = u.masspole + u.masscart
        u.polemass_length = u.masspole * u.length
    return env


def record(env_id, episodes_spec, physics=None):
    env = make_world(env_id, physics or {})
    episodes = []
    for seed, policy_name, policy, after in episodes_spec:
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed + 1000)
        ep = {
            "seed": seed,
            "policy": policy_name,
            "initial_state": [float(v).hex() for v in env.unwrapped.state],
            "initial_obs": [f32(v) for v in obs],
            "steps_after_termination": 0,
            "steps": [],
        }
        t = 0
        extra = 0
        terminated_seen = False
        while True:
            a = policy(t, np.asarray(env.unwrapped.state, dtype=np.float64), rng)
            if env_id.startswith("Pendulum"):
                act = np.array([a], dtype=np.float32)
                a_json = f32(act[0])
            else:
                act = int(a)
                a_json = act
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obs, r, term, trunc, _ = env.step(act)
            ep["steps"].append(
                [
                    a_json,
                    [float(v).hex() for v in env.unwrapped.state],
                    [f32(v) for v in obs],
                    float(r).hex(),
                    bool(term),
                    bool(trunc),
                ]
            )
            t += 1
            if terminated_seen:
                extra += 1
            if term:
                terminated_seen = True
            if trunc or (terminated_seen and extra >= after):
                break
        ep["steps_after_termination"] = extra
        episodes.append(ep)
    fixture = {
        "env_id": env_id,
        "gymnasium_version": gym.__version__,
        "numpy_version": np.__version__,
        "max_episode_steps": env.spec.max_episode_steps,
        "format": FORMAT,
        "episodes": episodes,
    }
    if physics:
        fixture["physics"] = {k: float(v) for k, v in physics.items()}
    return fixture


def cartpole_random(t, s, rng):
    return int(rng.integers(0, 2))


def cartpole_alternating(t, s, rng):
    return t % 2


def cartpole_balance(t, s, rng):
    x, xd, th, thd = s
    return 1 if (th + 0.5 * thd + 0.02 * x + 0.1 * xd) > 0 else 0


def cartpole_right(t, s, rng):
    return 1


def pend_random(t, s, rng):
    return rng.uniform(-2.0, 2.0)


def pend_wide(t, s, rng):
    return rng.uniform(-6.0, 6.0)


def pend_const(c):
    return lambda t, s, rng: c


def pend_energy(t, s, rng):
    # crude swing-up: push along the angular velocity, out-of-range to exercise the clip
    th, thd = s
    return 5.0 if thd >= 0 else -5.0


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures")
    os.makedirs(out, exist_ok=True)
    cart = record(
        "CartPole-v1",
        [(s, "random", cartpole_random, 0) for s in range(0, 12)]
        + [(100, "random", cartpole_random, 6), (101, "right", cartpole_right, 3)]
        + [(200, "alternating", cartpole_alternating, 0), (201, "alternating", cartpole_alternating, 0)]
        + [(300, "balance", cartpole_balance, 0)],
    )
    pend = record(
        "Pendulum-v1",
        [
            (0, "random", pend_random, 0),
            (1, "random_wide", pend_wide, 0),
            (2, "const_0", pend_const(0.0), 0),
            (3, "const_+5", pend_const(5.0), 0),
            (4, "const_-5", pend_const(-5.0), 0),
            (5, "const_1.3", pend_const(1.3), 0),
            (6, "energy_pm5", pend_energy, 0),
        ],
    )
    # The changed worlds of `eqprop life` (src/env/world.rs: DEFAULT_*_WORLDS).
    cart_worlds = [
        record("CartPole-v1", [(s, "random", cartpole_random, 0) for s in range(3)]
               + [(300, "balance", cartpole_balance, 0)], physics)
        for physics in ({"length": 1.0, "masspole": 0.3}, {"masscart": 2.0})
    ]
    pend_worlds = [
        record("Pendulum-v1", [(0, "random", pend_random, 0), (6, "energy_pm5", pend_energy, 0)],
               physics)
        for physics in ({"g": 6.0, "m": 0.6}, {"l": 0.7})
    ]
    for name, data in (("gym_cartpole.json", cart), ("gym_pendulum.json", pend),
                       ("gym_cartpole_worlds.json", cart_worlds),
                       ("gym_pendulum_worlds.json", pend_worlds)):
        path = os.path.join(out, name)
        with open(path, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        for d in data if isinstance(data, list) else [data]:
            n = sum(len(e["steps"]) for e in d["episodes"])
            lens = [len(e["steps"]) for e in d["episodes"]]
            print(f"{path} {d.get('physics', 'default')}: {len(d['episodes'])} episodes, "
                  f"{n} steps, lengths {lens}")
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()

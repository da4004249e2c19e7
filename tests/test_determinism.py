"""Same scenario and seed: the same report, in separate processes with different hash seeds."""

import json
import os
import subprocess
import sys

from edgeswarm.sim.determinism import seed_trio_scheduler


def run_cli(args, env_extra, cwd):
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "edgeswarm.node", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )


def without_wall(report):
    return {k: v for k, v in report.items() if not k.startswith("wall")}


def differences(a, b, path=""):
    """Where two reports differ: paths with both values (what a failure shows)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}/{k}")]
    return [] if a == b else [f"{path}: {a!r:.80} != {b!r:.80}"]


def test_smoke_scenario_is_reproducible(tmp_path, repo):
    reports = []
    for n, hash_seed in enumerate(["1", "2"]):
        out = tmp_path / f"run{n}"
        run_cli(
            ["-q", "sim", "run", "configs/sim/smoke.toml", "--out", str(out), "--seed", "7"],
            {"PYTHONHASHSEED": hash_seed},
            repo,
        )
        reports.append(json.loads((out / "report.json").read_text()))
        assert (out / "membership.png").stat().st_size > 10_000
        assert len(list((out / "nodes").glob("*.sqlite"))) == 100
    first, second = reports
    assert {"scenario", "seed", "nodes", "virtual_seconds", "wall_seconds", "metrics"} <= first.keys()
    assert first["nodes"] == 100 and first["seed"] == 7 and first["scenario"] == "smoke"
    assert not differences(without_wall(first), without_wall(second))
    assert first["metrics"]["churn"]["crashes"] > 0


def test_trio_still_has_a_seedable_scheduler():
    seed_trio_scheduler(1)  # raises if trio moved its scheduler RNG


def test_timers_due_at_the_same_instant_expire_in_the_order_they_were_set():
    """trio broke such ties by the cancel scopes' memory addresses, which move between runs:
    in virtual time many timers are due together, and who woke first drew first from shared RNGs."""
    import trio
    from trio._core import _run

    seed_trio_scheduler(1)  # the simulator's: also orders equal deadlines
    scopes = [trio.CancelScope() for _ in range(50)]
    deadlines = _run.Deadlines()
    for scope in reversed(scopes):  # set in the reverse of the order they were made in
        deadlines.add(5.0, scope)
    assert [entry[2] for entry in sorted(deadlines._heap, key=lambda e: e[:2])] == scopes[::-1]

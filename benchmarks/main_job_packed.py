"""The main job's train step on packed params against the plain tree, optimizer by optimizer.

``examples/compare_optimizers.py`` (the Flax MLP on scikit-learn's digits, batch 64) builds
each optimizer's jitted train step twice through its own ``setup``: on the plain params
tree (``--no-packed``) and on ``gtx.pack``ed params (``--packed``). The steps are timed
in one process, interleaved: every round runs a block of steps of every optimizer in both
modes (which mode goes first alternates between rounds), so that a change in the
machine's load falls on both. A step is timed as the main job times it (call, then
``float(loss)``, which waits for it); the first call of each step is its compile time.
Prints, per optimizer, the median step of each mode and their ratio, the compile times,
and the machine's load average before and after::

    python benchmarks/main_job_packed.py
    python benchmarks/main_job_packed.py --rounds 3 --steps 10 --optimizers adam,muon
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_main_job():
  spec = importlib.util.spec_from_file_location(
      "compare_optimizers", ROOT / "examples" / "compare_optimizers.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main(argv: list[str] | None = None) -> dict:
  job = load_main_job()
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--optimizers", default=",".join(job.OPTIMIZERS))
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=20, help="Steps per block.")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--json", default=None, help="Also write the results here.")
  args = parser.parse_args(argv)
  names = [n.strip() for n in args.optimizers.split(",") if n.strip()]

  x_train, _, y_train, _ = job.load_data(0)
  rng = np.random.default_rng(0)
  batches = [rng.choice(len(x_train), args.batch_size, replace=False) for _ in range(50)]
  batches = [(x_train[b], y_train[b]) for b in batches]
  total_steps = 30 * (len(x_train) // args.batch_size)  # the main job's schedules
  load_before = os.getloadavg()

  runs, compile_s = {}, {}
  for name in names:
    for packed in (False, True):
      _, params, state, step = job.setup(job.OPTIMIZERS[name][1], total_steps, 0, packed)
      start = time.perf_counter()
      params, state, loss = step(params, state, *batches[0])
      float(loss)
      compile_s[name, packed] = time.perf_counter() - start
      runs[name, packed] = [params, state, step]

  times = {key: [] for key in runs}
  for r in range(args.rounds):
    for name in names:
      for packed in ((False, True) if r % 2 == 0 else (True, False)):
        run = runs[name, packed]
        for i in range(args.steps):
          x, y = batches[(r * args.steps + i) % len(batches)]
          start = time.perf_counter()
          run[0], run[1], loss = run[2](run[0], run[1], x, y)
          float(loss)
          times[name, packed].append(time.perf_counter() - start)
  load_after = os.getloadavg()

  rows = []
  print(f"{'optimizer':<20} {'plain step':>11} {'packed step':>12} {'packed/plain':>13} "
        f"{'compile plain/packed':>21}")
  for name in names:
    plain, packed = (1e3 * float(np.median(times[name, p])) for p in (False, True))
    rows.append({"name": name, "plain_ms": plain, "packed_ms": packed,
                 "ratio": packed / plain, "compile_plain_s": compile_s[name, False],
                 "compile_packed_s": compile_s[name, True]})
    print(f"{name:<20} {plain:>8.3f} ms {packed:>9.3f} ms {packed / plain:>13.2f} "
          f"{compile_s[name, False]:>9.2f} / {compile_s[name, True]:.2f} s")
  ratios = [row["ratio"] for row in rows]
  geomean = float(np.exp(np.mean(np.log(ratios))))
  faster = sum(r < 1 for r in ratios)
  print(f"packed/plain: geometric mean {geomean:.2f}, packed faster for {faster} of "
        f"{len(rows)}; {args.rounds} rounds x {args.steps} steps per mode; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"({os.cpu_count()} CPUs, jax {jax.__version__}, {platform.processor() or 'cpu'})")
  report = {"rows": rows, "geomean_ratio": geomean, "packed_faster": faster,
            "load_before": load_before, "load_after": load_after,
            "rounds": args.rounds, "steps": args.steps, "jax": jax.__version__}
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
  return report


if __name__ == "__main__":
  main()

"""Compile time and kernel counts of packed train steps: run-time against constant offsets.

For each problem this builds the clipped-AdamW train step (``value_and_grad`` of the loss,
``chain(clip_by_global_norm(1.0), adamw(1e-3))``, ``apply_updates``; jitted, params and
state donated) four ways and prints, per contender:

- **kernels**: the fused computations of the compiled HLO and how many of them are
  distinct (XLA:CPU compiles identical kernels once, so the distinct count is what LLVM
  compiles; a count, independent of the machine's load);
- **compile**: lowering + compiling after ``jax.clear_caches()``, the contenders
  alternating run by run (median and all runs);
- **step**: the median (min-max) over rounds of steps, the contenders interleaved.

Contenders: **optax** and **gradtx** on the plain tree; **packed, constant offsets**
(the loss on ``unpack_views.split_unpack``: the views as constant-offset slices of the
buffers, what ``gtx.unpack`` did before) and **packed** (the loss on ``gtx.unpack``,
whose views are cut at offsets XLA cannot fold into the kernels). The two packed steps are checked to give the
same bits after a few steps, and the packed params against the plain tree's.

Problems: ``N`` leaves of 2000 float32 (``loss = sum_i mean((w_i - x)**2)``, as in
``train_step.py``), and ``mlp``: ``train_step.py``'s deep Flax MLP (96 x Dense(64) +
LayerNorm, 386 arrays, no scan over layers).

    python benchmarks/pack_compile.py                          # 250, 1000, 2000 leaves, mlp
    python benchmarks/pack_compile.py --problems 250 --rounds 5 --compile-repeats 2
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import platform
import re
import statistics

import jax
import numpy as np

import gradtx as gtx
import train_step  # the script's folder is on sys.path
from gradtx._src import unpack_views
from train_step import mlp, synthetic

SIZE = 2000
MLP_SHAPE = (96, 64)  # depth, width

_METADATA = re.compile(r",? ?metadata=\{[^}]*\}")
_SUFFIXED_NAME = re.compile(r"%?\b([A-Za-z_][\w\-]*)(\.\w+)+")
_REGION = re.compile(r"\bregion_\d+")


def kernel_counts(hlo_text: str) -> tuple[int, int]:
  """``(fused computations, distinct ones)`` in a compiled module's HLO text: each fusion's
  computation with names canonicalised and metadata dropped, compared as text."""
  bodies, name, lines = {}, None, []
  for line in hlo_text.splitlines():
    header = re.match(r"^%?([\w.\-]+) \(.*\{\s*$", line)
    if header and not line.startswith(" "):
      name, lines = header.group(1), [line[line.index("("):]]
    elif name is not None and line.startswith("}"):
      bodies[name], name = "\n".join(lines), None
    elif name is not None:
      lines.append(line)
  called = re.findall(r" fusion\(.*?calls=%?([\w.\-]+)", hlo_text)
  distinct = collections.Counter()
  for callee in called:
    body = _REGION.sub("region", _SUFFIXED_NAME.sub(r"\1", _METADATA.sub("", bodies[callee])))
    distinct[hashlib.md5(body.replace("%", "").encode()).hexdigest()] += 1
  return len(called), len(distinct)


def clipped_adamw(lib):
  return lib.chain(lib.clip_by_global_norm(1.0), lib.adamw(1e-3))


class TrainStep(train_step.JaxTrainStep):
  """``train_step.py``'s train step with the clipped AdamW of ``lib``, not run after
  compiling (the contenders' params are compared from the start), and its kernel counts."""

  def __init__(self, lib, problem, unpack=None):
    params, batch, loss, _ = problem
    super().__init__(clipped_adamw(lib), lib.apply_updates, params, batch, loss,
                     unpack=unpack, warm=False)
    self.kernels = kernel_counts(self.step.as_text())


CHOSEN = None  # --contenders


def contenders() -> dict:
  makers = {}
  try:
    import optax
    makers["optax"] = lambda problem: TrainStep(optax, problem)
  except ImportError:
    pass
  makers["gradtx"] = lambda problem: TrainStep(gtx, problem)
  makers["packed, constant offsets"] = lambda problem: TrainStep(
      gtx, problem, unpack_views.split_unpack)
  makers["packed"] = lambda problem: TrainStep(gtx, problem, gtx.unpack)
  return {k: v for k, v in makers.items() if CHOSEN is None or k in CHOSEN}


def max_difference(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def bench(label: str, problem, compile_repeats: int, rounds: int, per_round: int,
          check_steps: int) -> None:
  leaves = jax.tree.leaves(problem[0])
  print(f"\n{label}: {len(leaves)} parameter arrays, {sum(x.size for x in leaves):,} floats; "
        "clipped-AdamW train step")
  makers = contenders()
  compile_s = {name: [] for name in makers}
  steps = {}
  for _ in range(max(compile_repeats, 1)):
    for name, make in makers.items():
      jax.clear_caches()
      steps[name] = make(problem)
      compile_s[name].append(steps[name].compile_s)
      print(f"  compiled {name}: {steps[name].compile_s:.1f} s, {steps[name].kernels[0]} "
            f"fused computations, {steps[name].kernels[1]} distinct", flush=True)

  start = {name: jax.tree.map(np.asarray, step.plain_params()) for name, step in steps.items()}
  first = next(iter(start.values()))
  assert all(max_difference(first, p) == 0 for p in start.values())
  for step in steps.values():
    step.run(check_steps)
  after = {name: step.plain_params() for name, step in steps.items()}
  checks = []
  if "packed" in after and "packed, constant offsets" in after:
    same_bits = all(bool(np.array_equal(x, y)) for x, y in zip(
        jax.tree.leaves(after["packed"]), jax.tree.leaves(after["packed, constant offsets"])))
    checks.append("packed vs constant offsets: "
                  + ("the same bits" if same_bits else "DIFFERENT BITS"))
  for a, b in (("packed", "gradtx"), ("packed", "optax"), ("gradtx", "optax")):
    if a in after and b in after:
      checks.append(f"{a} vs {b}: max |diff| {max_difference(after[a], after[b]):.2e}")
  print(f"  after {check_steps} steps: " + "; ".join(checks))

  times = {name: [] for name in steps}
  for _ in range(rounds):
    for name, step in steps.items():
      times[name].append(step.run(per_round))
  base_step = statistics.median(times["optax"]) if "optax" in times else float("nan")
  base_compile = statistics.median(compile_s["optax"]) if "optax" in times else float("nan")
  print(f"  {'contender':26s} {'fused':>6s} {'distinct':>8s} {'compile s':>10s} "
        f"{'vs optax':>8s} {'step ms':>8s} {'min-max ms':>15s} {'optax/step':>10s}  "
        "compile runs")
  for name, step in steps.items():
    fused, distinct = step.kernels
    c = statistics.median(compile_s[name])
    t, low, high = statistics.median(times[name]), min(times[name]), max(times[name])
    runs = ", ".join(f"{s:.1f}" for s in compile_s[name])
    print(f"  {name:26s} {fused:6d} {distinct:8d} {c:10.2f} {c / base_compile:7.2f}x "
          f"{t * 1e3:8.2f} {low * 1e3:7.2f}-{high * 1e3:<7.2f} {base_step / t:9.2f}x  {runs}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--problems", nargs="+", default=["250", "1000", "2000", "mlp"],
                      help="Leaf counts (leaves of 2000 floats) and/or 'mlp' (default: "
                           "250 1000 2000 mlp).")
  parser.add_argument("--compile-repeats", type=int, default=2,
                      help="Compilations per contender, alternating (default: 2).")
  parser.add_argument("--rounds", type=int, default=7,
                      help="Timing rounds, every contender once per round (default: 7).")
  parser.add_argument("--per-round", type=int, default=5,
                      help="Steps per contender per round (default: 5).")
  parser.add_argument("--check-steps", type=int, default=3,
                      help="Steps before comparing the contenders' params (default: 3).")
  parser.add_argument("--contenders", nargs="+", default=None,
                      help="A subset of the contenders by name (default: all): optax, "
                           "gradtx, 'packed, constant offsets', packed.")
  args = parser.parse_args()
  global CHOSEN
  CHOSEN = args.contenders
  print(f"gradtx packed-step compile benchmark: jax {jax.__version__} on "
        f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()})")
  for problem in args.problems:
    if problem == "mlp":
      label = f"mlp (Flax, {MLP_SHAPE[0]} x Dense({MLP_SHAPE[1]}) + LayerNorm)"
      built = mlp(*MLP_SHAPE)
    elif problem.isdigit():
      label, built = f"{problem} x {SIZE}", synthetic(int(problem), SIZE)
    else:
      parser.error(f"unknown problem {problem!r}: a leaf count or 'mlp'")
    bench(label, built, args.compile_repeats, args.rounds, args.per_round,
          args.check_steps)


if __name__ == "__main__":
  main()

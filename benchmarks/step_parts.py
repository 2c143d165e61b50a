"""Where a packed train step's time goes: the whole step against its parts, side by side.

On ``train_step.py``'s synthetic trees (``loss = sum_i mean((w_i - x)**2)``), in one
process, interleaved round by round (medians, min-max), this times compiled programs:

- **optax step** / **packed step**: the whole Adam train step (``value_and_grad``, update,
  apply; jitted, donated) of Optax on the plain tree and of gradtx on ``gtx.pack``ed params
  with the loss on ``gtx.unpack`` (``train_step.JaxTrainStep``);
- **packed: loss + gradient**: ``value_and_grad`` of the loss on ``gtx.unpack``, alone;
- **packed: adam + apply**: ``gtx.adam``'s update and ``apply_updates`` on the packed params
  with a given packed gradient, alone (donated);
- **plain tree: loss + gradient**: ``value_and_grad`` of the loss on the plain tree;
- **one stacked array: loss + gradient**: the same loss on the leaves stacked into one
  ``(leaves, size)`` array (``mean`` over the last axis, summed): what the model's part would
  cost if it were not one kernel sequence per leaf.

For each it prints the fused computations of the compiled HLO (XLA:CPU runs one kernel per
fused computation, one after another), so the time per kernel can be read off.

    python benchmarks/step_parts.py                        # 2000x2k
    python benchmarks/step_parts.py --problems 2000x2k 250x2k --rounds 9
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import gradtx as gtx
from optimizer_step import compile_donated  # the script's folder is on sys.path
from pack_compile import kernel_counts
from train_step import JaxTrainStep, synthetic


class Program:
  """A compiled program with fixed arguments; ``run(k)`` returns seconds per call."""

  def __init__(self, fn, *args, donate=False):
    if donate:  # the first two arguments are donated and replaced by the first two outputs
      self.compiled, self.compile_s, _ = compile_donated(fn, *args)
    else:
      start = time.perf_counter()
      self.compiled = jax.jit(fn).lower(*args).compile()
      self.compile_s = time.perf_counter() - start
    self.args, self.donate = list(args), donate
    self.kernels = kernel_counts(self.compiled.as_text())[0]
    self.run(1)

  def run(self, k: int) -> float:
    start = time.perf_counter()
    for _ in range(k):
      out = self.compiled(*self.args)
      if self.donate:
        self.args[:2] = out[:2]
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / k


class WholeStep:
  """A ``train_step.JaxTrainStep`` with a :class:`Program`'s attributes."""

  def __init__(self, step: JaxTrainStep):
    self.step, self.compile_s = step, step.compile_s
    self.kernels = kernel_counts(step.step.as_text())[0]

  def run(self, k: int) -> float:
    return self.step.run(k)


def programs(leaves: int, size: int) -> dict:
  params, batch, loss, _ = synthetic(leaves, size)
  packed = gtx.pack(params)
  on_packed = lambda q, x: loss(gtx.unpack(q), x)  # noqa: E731
  tx = gtx.adam(1e-3)

  def adam_apply(p, state, grads):
    updates, state = tx.update(grads, state, p)
    return gtx.apply_updates(p, updates), state

  made = {}
  try:
    import optax
    made["optax step"] = lambda: WholeStep(JaxTrainStep(
        optax.adam(1e-3), optax.apply_updates, params, batch, loss))
  except ImportError:
    pass
  made["packed step"] = lambda: WholeStep(JaxTrainStep(
      tx, gtx.apply_updates, params, batch, loss, unpack=gtx.unpack))
  made["packed: loss + gradient"] = lambda: Program(
      jax.value_and_grad(on_packed), packed, batch)
  made["packed: adam + apply"] = lambda: Program(
      adam_apply, jax.tree.map(jnp.copy, packed), tx.init(packed),
      jax.grad(on_packed)(packed, batch), donate=True)
  made["plain tree: loss + gradient"] = lambda: Program(
      jax.value_and_grad(loss), params, batch)
  made["one stacked array: loss + gradient"] = lambda: Program(
      jax.value_and_grad(lambda w, x: jnp.sum(jnp.mean((w - x) ** 2, axis=-1))),
      jnp.stack(jax.tree.leaves(params)), batch)
  built = {}
  for name, make in made.items():
    built[name] = make()
    print(f"  compiled {name}: {built[name].compile_s:.1f} s", flush=True)
  return built


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--problems", nargs="+", default=["2000x2k"],
                      help="LEAVESxSIZE trees, size in thousands with 'k' (default: 2000x2k).")
  parser.add_argument("--rounds", type=int, default=7,
                      help="Timing rounds, every program once per round (default: 7).")
  parser.add_argument("--per-round", type=int, default=10,
                      help="Calls per program per round (default: 10).")
  args = parser.parse_args()
  print(f"gradtx step parts: jax {jax.__version__} on {jax.devices()[0].device_kind} "
        f"({platform.processor() or platform.machine()})")
  for problem in args.problems:
    leaves, size = problem.lower().split("x")
    size = int(size[:-1]) * 1000 if size.endswith("k") else int(size)
    print(f"\n{problem}: {leaves} leaves of {size} float32")
    built = programs(int(leaves), size)
    times = {name: [] for name in built}
    for _ in range(args.rounds):
      for name, program in built.items():
        times[name].append(program.run(args.per_round))
    print(f"  {'program':36s} {'ms':>8s} {'min-max':>15s} {'kernels':>8s} {'us/kernel':>9s}")
    for name, ts in times.items():
      t, kernels = statistics.median(ts), built[name].kernels
      print(f"  {name:36s} {t * 1e3:8.2f} {min(ts) * 1e3:7.2f}-{max(ts) * 1e3:<7.2f} "
            f"{kernels:8d} {t * 1e6 / max(kernels, 1):9.2f}")


if __name__ == "__main__":
  main()

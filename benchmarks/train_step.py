"""Whole train steps (loss, gradient, optimizer, apply): packed params against the plain tree.

For each problem this builds one train step per contender, times them round by round
(every contender once per round, medians over the rounds) and prints the step time, the
ratio to Optax, the first-call compile time, XLA's estimate of the step's peak memory, the
arrays crossing the step and the concatenations XLA runs as passes of their own (the
gradient's assembly into a buffer, when not fused into the kernels computing its pieces):

- **optax**: ``jax.value_and_grad`` of the loss on the params tree, ``optax.adam`` and
  ``optax.apply_updates``, in one jitted step that donates params and optimizer state;
- **gradtx**: the same with ``gtx.adam`` on the plain tree;
- **gradtx packed**: the params packed once with ``gtx.pack``; the loss is written on
  ``gtx.unpack(packed)``, so the gradient, the Adam state and the update are a few buffers;
- **packed <=N**: the same with ``gtx.pack(params, max_buffer_size=N)``: buffers of at
  most N elements (runs of consecutive leaves; a larger leaf alone);
- **packed <=K leaves**: the same with ``gtx.pack(params, max_buffer_leaves=K)``: runs of
  at most K consecutive leaves per buffer;
- **floor <=N**: no optimizer: the step computes the loss and its gradient on the packed
  params (buffers of at most N elements) and writes the gradient where the params were.
  Every optimizer's packed step does at least this, so ``optax / floor`` bounds the
  factor by which any packed Adam step can beat Optax on that problem and machine;
- **torch fused**: the same model in torch (CPU), ``torch.optim.Adam(fused=True)``, forward,
  backward and step (synthetic trees and the MLP).

Problems: the synthetic trees of ``optimizer_step.py`` (1x4M, 100x40k, 2000x2k: leaves of
float32 whose loss is ``sum_i mean((w_i - x)**2)`` against one data vector ``x`` per step;
and 500x8k, the same 4M floats in 500 leaves)
and a real Flax model with many parameter arrays: a deep MLP (``Dense`` + ``LayerNorm`` per
layer, no scan over layers) on a digits-sized batch. A last table times the compilation of
the 2000-leaf train step with ``chain(clip_by_global_norm(1.0), adamw(1e-3))``.

    python benchmarks/train_step.py              # all problems
    python benchmarks/train_step.py --quick      # small problems: a smoke run
    python benchmarks/train_step.py --problems 2000x2k mlp --rounds 9
"""

from __future__ import annotations

import argparse
import functools
import platform
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx
from optimizer_step import compile_donated  # the script's folder is on sys.path

SHAPES = {"1x4M": (1, 4_000_000), "100x40k": (100, 40_000), "500x8k": (500, 8_000),
          "2000x2k": (2000, 2_000)}
QUICK_SHAPES = {"1x400k": (1, 400_000), "100x4k": (100, 4_000), "500x200": (500, 200)}
MLP = {"mlp": (96, 64)}          # depth, width: 4 arrays per layer
QUICK_MLP = {"mlp": (16, 32)}
# The packed contender with buffers of at most this many elements (see --buffer-sizes),
# and with at most this many leaves (--buffer-leaves: XLA:CPU fuses a concatenation of at
# most 8 pieces into the kernels computing them, see concat_fusion.py).
BUFFER_SIZE = 16_384
BUFFER_LEAVES = 8


# Problems: params, a batch, a JAX loss(params, batch), and a torch twin.


def synthetic(leaves: int, size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  params = {f"w{i:04d}": jnp.asarray(rng.standard_normal(size, dtype=np.float32))
            for i in range(leaves)}
  batch = jnp.asarray(rng.standard_normal(size, dtype=np.float32))

  def loss(params, x):
    return sum(jnp.mean((w - x) ** 2) for w in jax.tree.leaves(params))

  def torch_twin():
    import torch
    tensors = [torch.tensor(np.asarray(w), requires_grad=True) for w in params.values()]
    x = torch.tensor(np.asarray(batch))

    def torch_loss():
      return sum(((w - x) ** 2).mean() for w in tensors)

    return tensors, torch_loss

  return params, batch, loss, torch_twin


def mlp(depth: int, width: int, seed: int = 0):
  import flax.linen as nn

  class DeepMLP(nn.Module):

    @nn.compact
    def __call__(self, x):
      for _ in range(depth):
        x = nn.relu(nn.LayerNorm()(nn.Dense(width)(x)))
      return nn.Dense(10)(x)

  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((128, 64), dtype=np.float32))
  y = jnp.asarray(rng.integers(0, 10, 128))
  model = DeepMLP()
  params = model.init(jax.random.key(seed), x)

  def loss(params, batch):
    x, y = batch
    logits = model.apply(params, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

  def torch_twin():
    import torch
    layers, inputs = [], 64
    for _ in range(depth):
      layers += [torch.nn.Linear(inputs, width), torch.nn.LayerNorm(width), torch.nn.ReLU()]
      inputs = width
    net = torch.nn.Sequential(*layers, torch.nn.Linear(inputs, 10))
    tx, ty = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y), dtype=torch.long)

    def torch_loss():
      return torch.nn.functional.cross_entropy(net(tx), ty)

    return list(net.parameters()), torch_loss

  return params, (x, y), loss, torch_twin


# Contenders.


class JaxTrainStep:
  """A donated, jitted train step: value_and_grad, ``tx.update``, ``apply_updates``.

  With ``unpack`` (``gtx.unpack``, or another way to read packed params) the params are
  ``gtx.pack``ed (with ``max_buffer_size``, ``max_buffer_leaves``) and the loss is
  written on ``unpack(packed)``. ``warm`` runs one step after compiling, so that
  timings start from a run step."""

  def __init__(self, tx, apply_updates, params, batch, loss, unpack=None, warm=True,
               max_buffer_size=None, max_buffer_leaves=None):
    if unpack is not None:
      params = gtx.pack(params, max_buffer_size=max_buffer_size,
                        max_buffer_leaves=max_buffer_leaves)
      plain_loss = loss
      loss = lambda packed_params, b: plain_loss(unpack(packed_params), b)
    self.unpack = unpack
    self.params = jax.tree.map(jnp.copy, params)
    self.state = tx.init(self.params)
    self.batch = batch
    self.arrays = len(jax.tree.leaves((self.params, self.state)))

    def step(params, state, batch):
      value, grads = jax.value_and_grad(loss)(params, batch)
      updates, state = tx.update(grads, state, params)
      return apply_updates(params, updates), state, value

    self.step, self.compile_s, self.peak_bytes = compile_donated(
        step, self.params, self.state, batch)
    self.concats = unfused_concatenates(self.step.as_text())
    if warm:
      self.run(1)

  def run(self, k: int) -> float:
    start = time.perf_counter()
    for _ in range(k):
      self.params, self.state, value = self.step(self.params, self.state, self.batch)
    value.block_until_ready()
    return (time.perf_counter() - start) / k

  def plain_params(self):
    """The params as the plain tree."""
    return self.params if self.unpack is None else self.unpack(self.params)


def unfused_concatenates(hlo_text: str) -> int:
  """The concatenations a compiled module runs as passes of their own (in its entry
  computation, not fused into the kernels that compute their pieces)."""
  return len(re.findall(r" concatenate\(", hlo_text[hlo_text.index("ENTRY"):]))


class TorchTrainStep:
  """forward, backward and ``Adam(fused=True).step()`` on the problem's torch twin."""

  def __init__(self, torch_twin):
    import torch
    self.params, self.loss = torch_twin()
    self.opt = torch.optim.Adam(self.params, lr=1e-3, fused=True)
    self.compile_s = 0.0
    self.peak_bytes = None
    self.concats = None
    self.arrays = len(self.params)
    self.run(3)  # warm-up: torch's first steps allocate the state and the autograd graph

  def run(self, k: int) -> float:
    start = time.perf_counter()
    for _ in range(k):
      self.opt.zero_grad(set_to_none=False)
      self.loss().backward()
      self.opt.step()
    return (time.perf_counter() - start) / k


def contenders(problem, with_torch=True, buffer_sizes=(), buffer_leaves=()) -> dict:
  params, batch, loss, torch_twin = problem
  built = {}
  try:
    import optax
    built["optax"] = lambda: JaxTrainStep(optax.adam(1e-3), optax.apply_updates, params,
                                          batch, loss)
  except ImportError:
    pass
  built["gradtx"] = lambda: JaxTrainStep(gtx.adam(1e-3), gtx.apply_updates, params, batch,
                                         loss)
  built["gradtx packed"] = lambda: JaxTrainStep(gtx.adam(1e-3), gtx.apply_updates, params,
                                                batch, loss, unpack=gtx.unpack)
  for size in buffer_sizes:
    built[f"packed <={size}"] = functools.partial(
        JaxTrainStep, gtx.adam(1e-3), gtx.apply_updates, params, batch, loss,
        unpack=gtx.unpack, max_buffer_size=size)
  for leaves in buffer_leaves:
    built[f"packed <={leaves} leaves"] = functools.partial(
        JaxTrainStep, gtx.adam(1e-3), gtx.apply_updates, params, batch, loss,
        unpack=gtx.unpack, max_buffer_leaves=leaves)
  for size in buffer_sizes:
    # The gradient, written into the donated params' buffers: the floor of a packed step.
    built[f"floor <={size}"] = functools.partial(
        JaxTrainStep, gtx.identity(), lambda params, updates: updates, params, batch, loss,
        unpack=gtx.unpack, max_buffer_size=size)
  if with_torch:
    try:
      import torch  # noqa: F401
      built["torch fused"] = lambda: TorchTrainStep(torch_twin)
    except ImportError:
      pass
  return {label: make() for label, make in built.items()}


def time_round_robin(steps: dict, rounds: int, per_round: int) -> dict:
  times = {label: [] for label in steps}
  for _ in range(rounds):
    for label, step in steps.items():
      times[label].append(step.run(per_round))
  return {label: (statistics.median(ts), min(ts), max(ts)) for label, ts in times.items()}


def mib(n) -> str:
  return "-" if n is None else f"{n / 2**20:.1f}"


def bench_problem(label: str, problem, rounds: int, per_round: int,
                  buffer_sizes=(), buffer_leaves=()) -> None:
  params = problem[0]
  leaves = jax.tree.leaves(params)
  steps = contenders(problem, buffer_sizes=buffer_sizes, buffer_leaves=buffer_leaves)
  times = time_round_robin(steps, rounds, per_round)
  base = times["optax"][0] if "optax" in times else float("nan")
  print(f"\n{label}: {len(leaves)} parameter arrays, {sum(x.size for x in leaves):,} "
        f"floats; Adam; median (min-max) of {rounds} rounds of {per_round} steps")
  print(f"  {'contender':18s} {'step ms':>9s} {'min-max ms':>15s} {'vs optax':>9s} "
        f"{'compile s':>10s} {'peak MiB':>9s} {'arrays':>7s} {'concats':>7s}")
  for name, step in steps.items():
    median, low, high = times[name]
    print(f"  {name:18s} {median * 1e3:9.2f} {low * 1e3:7.2f}-{high * 1e3:<7.2f} "
          f"{base / median:8.2f}x {step.compile_s:10.2f} {mib(step.peak_bytes):>9s} "
          f"{step.arrays:7d} {'-' if step.concats is None else step.concats:>7}")


def bench_compile(leaves: int, size: int, repeats: int) -> None:
  """Compile time of the clipped-AdamW train step on the ``leaves``-leaf synthetic tree."""
  problem = synthetic(leaves, size)
  params, batch, loss, _ = problem
  makers = {"gradtx": (lambda: gtx.chain(gtx.clip_by_global_norm(1.0), gtx.adamw(1e-3)),
                       False),
            "gradtx packed": (lambda: gtx.chain(gtx.clip_by_global_norm(1.0),
                                                gtx.adamw(1e-3)), True)}
  try:
    import optax
    makers = {"optax": (lambda: optax.chain(optax.clip_by_global_norm(1.0),
                                            optax.adamw(1e-3)), False), **makers}
  except ImportError:
    pass
  print(f"\ncompile time of the jitted train step with chain(clip_by_global_norm(1.0), "
        f"adamw(1e-3)), {leaves} leaves of {size} (lowering + compiling), "
        f"{repeats} runs each, alternating")
  seconds = {name: [] for name in makers}
  for _ in range(repeats):
    for name, (make, packed) in makers.items():
      jax.clear_caches()
      seconds[name].append(JaxTrainStep(make(), gtx.apply_updates, params, batch, loss,
                                        unpack=gtx.unpack if packed else None,
                                        warm=False).compile_s)
  base = statistics.median(seconds["optax"]) if "optax" in seconds else float("nan")
  for name, runs in seconds.items():
    runs_text = ", ".join(f"{s:.1f}" for s in runs)
    print(f"  {name:14s} median {statistics.median(runs):7.2f} s  "
          f"({statistics.median(runs) / base:.2f} x optax)  runs: {runs_text}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="Use small problems and few rounds, for a smoke run (default: off).")
  parser.add_argument("--problems", nargs="+", default=None,
                      help=f"The problems to time, a subset of {list(SHAPES) + list(MLP)}, "
                           f"or of {list(QUICK_SHAPES) + list(QUICK_MLP)} with --quick "
                           "(default: all of them).")
  parser.add_argument("--rounds", type=int, default=None,
                      help="Timing rounds per problem (default: 7, or 3 with --quick).")
  parser.add_argument("--compile-repeats", type=int, default=None,
                      help="Runs of the compile-time table (default: 3, or 1 with --quick; "
                           "0 skips it).")
  parser.add_argument("--buffer-sizes", nargs="*", type=int, default=[BUFFER_SIZE],
                      help="Also time packed params with each max_buffer_size given "
                           f"(elements; default: {BUFFER_SIZE}; none: only one buffer).")
  parser.add_argument("--buffer-leaves", nargs="*", type=int, default=[BUFFER_LEAVES],
                      help="Also time packed params with each max_buffer_leaves given "
                           f"(default: {BUFFER_LEAVES}; none: not timed).")
  args = parser.parse_args()

  shapes, mlps = (QUICK_SHAPES, QUICK_MLP) if args.quick else (SHAPES, MLP)
  wanted = args.problems or list(shapes) + list(mlps)
  rounds = args.rounds or (3 if args.quick else 7)
  per_round = 3 if args.quick else 5
  print(f"gradtx train-step benchmark: jax {jax.__version__} on "
        f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
        f"{jax.local_device_count()} device)")
  for label in wanted:
    if label in shapes:
      bench_problem(label, synthetic(*shapes[label]), rounds, per_round, args.buffer_sizes,
                    args.buffer_leaves)
    elif label in mlps:
      depth, width = mlps[label]
      bench_problem(f"mlp (Flax, {depth} x Dense({width}) + LayerNorm)", mlp(depth, width),
                    rounds, per_round, args.buffer_sizes, args.buffer_leaves)
    else:
      parser.error(f"unknown problem {label!r}")
  repeats = args.compile_repeats if args.compile_repeats is not None else (
      1 if args.quick else 3)
  if repeats:
    bench_compile(*((500, 200) if args.quick else (2000, 2000)), repeats)


if __name__ == "__main__":
  main()

"""One optimizer step: gradtx against Optax and torch.optim, in one process.

For each pytree shape and optimizer this times, alternating the contenders round by round:

- gradtx, the plain way (``update`` then ``apply_updates`` in one donated, jitted step);
- gradtx wrapped in ``gtx.flatten`` (the updates packed inside the step);
- gradtx on packed params (``gtx.pack``: params, grads and state one buffer per dtype);
- Optax, the same plain way;
- torch.optim with a per-tensor loop (``foreach=False``), ``foreach=True`` and ``fused=True``;
- the memory-bound limit: one donated, fused elementwise op over a single flat buffer that
  moves the bytes the algorithm must move (Adam reads params, grads, mu, nu and writes
  params, mu, nu: seven streams of the parameter count).

It prints median step times, each contender's share of the limit (limit time / step time),
first-call compile times, optimizer-state bytes, and XLA's peak memory estimate for the step.
A last table times the compilation of ``chain(clip_by_global_norm(1.0), adamw(...))`` for
the 2000-leaf tree, gradtx against Optax.

    python benchmarks/optimizer_step.py            # the issue's three shapes, all optimizers
    python benchmarks/optimizer_step.py --quick    # smaller shapes, a smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx

SHAPES = {"1x4M": (1, 4_000_000), "100x40k": (100, 40_000), "2000x2k": (2000, 2_000)}
QUICK_SHAPES = {"1x400k": (1, 400_000), "100x4k": (100, 4_000), "500x200": (500, 200)}

# name -> (gradtx factory, optax factory name and kwargs, torch class and kwargs, streams)
# ``streams`` counts the parameter-sized arrays the algorithm must read and write per step.
OPTIMIZERS = {
    "adam": (lambda: gtx.adam(1e-3), ("adam", dict(learning_rate=1e-3)),
             ("Adam", dict(lr=1e-3)), 7),
    "adamw": (lambda: gtx.adamw(1e-3, weight_decay=1e-4),
              ("adamw", dict(learning_rate=1e-3, weight_decay=1e-4)),
              ("AdamW", dict(lr=1e-3, weight_decay=1e-4)), 7),
    "sgd_momentum": (lambda: gtx.sgd(1e-2, momentum=0.9),
                     ("sgd", dict(learning_rate=1e-2, momentum=0.9)),
                     ("SGD", dict(lr=1e-2, momentum=0.9)), 5),
    "rmsprop": (lambda: gtx.rmsprop(1e-3), ("rmsprop", dict(learning_rate=1e-3)),
                ("RMSprop", dict(lr=1e-3, alpha=0.9, eps=1e-8)), 5),
}


def make_tree(leaves: int, size: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {f"w{i:04d}": jnp.asarray(rng.standard_normal(size, dtype=np.float32))
          for i in range(leaves)}


def state_bytes(state) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, "nbytes"))


def compile_donated(step, params, state, *rest):
  """``step`` jitted with its first two arguments (params, state) donated and compiled for
  these arguments: ``(compiled, compile seconds, XLA's peak-memory estimate in bytes)``,
  the estimate being arguments + outputs + temporaries - donated aliases (None where XLA
  gives no analysis)."""
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, *rest).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  peak = None if memory is None else (
      memory.argument_size_in_bytes + memory.output_size_in_bytes
      + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  return compiled, compile_s, peak


class JaxStep:
  """A donated, jitted ``update`` + ``apply_updates`` step for one transform."""

  def __init__(self, tx, apply_updates, params, grads):
    self.grads = grads
    self.params = jax.tree.map(jnp.copy, params)
    self.state = tx.init(self.params)
    self.state_bytes = state_bytes(self.state)

    def step(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return apply_updates(params, updates), state

    self.step, self.compile_s, self.peak_bytes = compile_donated(
        step, self.params, self.state, grads)
    self.run(1)

  def run(self, k: int) -> float:
    start = time.perf_counter()
    for _ in range(k):
      self.params, self.state = self.step(self.params, self.state, self.grads)
    jax.tree.leaves(self.params)[-1].block_until_ready()
    return (time.perf_counter() - start) / k


class LimitStep:
  """The memory-bound limit: the fastest donated elementwise op that moves the step's bytes.

  Two ways to move ``streams`` param-sized arrays through memory are timed and the faster
  one counts: ``a_1 <- a_1 + ... + a_{streams-1}`` (one fused pass reading streams-1
  buffers and writing one), and ``x <- 1.0001 * x`` over one buffer of ``streams/2``
  times the parameter count (read once, written once: a plain streaming copy).
  """

  def __init__(self, total: int, streams: int):
    self.inputs = [jnp.full((total,), 1.0 + i, jnp.float32) for i in range(streams - 1)]
    self.sum = jax.jit(lambda first, *rest: sum(rest, first), donate_argnums=0).lower(
        *self.inputs).compile()
    self.buffer = jnp.ones((streams * total // 2,), jnp.float32)
    self.scale = jax.jit(lambda x: 1.0001 * x, donate_argnums=0).lower(self.buffer).compile()
    self.compile_s = 0.0
    self.state_bytes = 0
    self.peak_bytes = None
    self.run(1)

  def run(self, k: int) -> float:
    start = time.perf_counter()
    for _ in range(k):
      self.inputs[0] = self.sum(*self.inputs)
    self.inputs[0].block_until_ready()
    middle = time.perf_counter()
    for _ in range(k):
      self.buffer = self.scale(self.buffer)
    self.buffer.block_until_ready()
    end = time.perf_counter()
    return min(middle - start, end - middle) / k


class TorchStep:
  def __init__(self, cls_name, kwargs, params, grads, variant):
    import torch
    self.torch = torch
    self.params = [torch.tensor(np.asarray(p)).requires_grad_() for p in params.values()]
    for p, g in zip(self.params, grads.values()):
      p.grad = torch.tensor(np.asarray(g))
    options = {"per-tensor": dict(foreach=False), "foreach": dict(foreach=True),
               "fused": dict(fused=True)}[variant]
    self.opt = getattr(torch.optim, cls_name)(self.params, **kwargs, **options)
    self.compile_s = 0.0
    self.run(1)
    self.state_bytes = sum(v.nbytes for s in self.opt.state.values()
                           for v in s.values() if torch.is_tensor(v) and v.ndim > 0)
    self.peak_bytes = None

  def run(self, k: int) -> float:
    start = time.perf_counter()
    with self.torch.no_grad():
      for _ in range(k):
        self.opt.step()
    return (time.perf_counter() - start) / k


def torch_variants(cls_name: str) -> list[str]:
  try:
    import torch
  except ImportError:
    return []
  variants = ["per-tensor", "foreach"]
  probe = [torch.zeros(2, requires_grad=True)]
  probe[0].grad = torch.zeros(2)
  try:
    getattr(torch.optim, cls_name)(probe, lr=0.1, fused=True).step()
    variants.append("fused")
  except (RuntimeError, TypeError, ValueError):
    pass
  return variants


def contenders(name: str, params, grads):
  make_gtx, (optax_name, optax_kwargs), (torch_cls, torch_kwargs), streams = OPTIMIZERS[name]
  total = sum(x.size for x in jax.tree.leaves(params))
  built = {"limit": lambda: LimitStep(total, streams),
           "gradtx": lambda: JaxStep(make_gtx(), gtx.apply_updates, params, grads),
           "gradtx flatten": lambda: JaxStep(gtx.flatten(make_gtx()), gtx.apply_updates,
                                             params, grads),
           "gradtx packed": lambda: JaxStep(make_gtx(), gtx.apply_updates,
                                            gtx.pack(params), gtx.pack(grads))}
  try:
    import optax
    built["optax"] = lambda: JaxStep(getattr(optax, optax_name)(**optax_kwargs),
                                     optax.apply_updates, params, grads)
  except ImportError:
    pass
  for variant in torch_variants(torch_cls):
    built[f"torch {variant}"] = (
        lambda variant=variant: TorchStep(torch_cls, torch_kwargs, params, grads, variant))
  return {label: make() for label, make in built.items()}


def time_round_robin(steps: dict, rounds: int, per_round: int) -> dict:
  times = {label: [] for label in steps}
  for _ in range(rounds):
    for label, step in steps.items():
      times[label].append(step.run(per_round))
  return {label: statistics.median(ts) for label, ts in times.items()}


def mib(n) -> str:
  return "-" if n is None else f"{n / 2**20:8.1f}"


def bench_steps(shapes: dict, names: list[str], rounds: int, per_round: int) -> None:
  for shape_label, (leaves, size) in shapes.items():
    params = make_tree(leaves, size)
    grads = jax.tree.map(lambda p: 1e-2 * p, make_tree(leaves, size, seed=1))
    for name in names:
      steps = contenders(name, params, grads)
      medians = time_round_robin(steps, rounds, per_round)
      limit = medians["limit"]
      print(f"\n{name}, {shape_label} ({leaves} leaves of {size}), "
            f"{OPTIMIZERS[name][3]} streams; median of {rounds} rounds")
      print(f"  {'contender':16s} {'step ms':>9s} {'share':>7s} {'compile s':>10s} "
            f"{'state MiB':>10s} {'peak MiB':>9s}")
      for label, step in steps.items():
        print(f"  {label:16s} {medians[label] * 1e3:9.3f} {limit / medians[label]:7.1%} "
              f"{step.compile_s:10.2f} {mib(step.state_bytes)} {mib(step.peak_bytes):>9s}")
      del steps


def bench_compile(leaves: int, size: int) -> None:
  params = make_tree(leaves, size)
  grads = jax.tree.map(lambda p: 1e-2 * p, params)
  contenders_ = {
      "gradtx": lambda: gtx.chain(gtx.clip_by_global_norm(1.0), gtx.adamw(1e-3)),
      "gradtx flatten": lambda: gtx.flatten(
          gtx.chain(gtx.clip_by_global_norm(1.0), gtx.adamw(1e-3))),
  }
  try:
    import optax
    contenders_["optax"] = lambda: optax.chain(optax.clip_by_global_norm(1.0),
                                               optax.adamw(1e-3))
  except ImportError:
    pass
  print(f"\ncompile time of a jitted chain(clip_by_global_norm(1.0), adamw(1e-3)) step, "
        f"{leaves} leaves of {size}")
  results = {}
  for label, make in contenders_.items():
    tx = make()
    apply = gtx.apply_updates
    start = time.perf_counter()
    JaxStep(tx, apply, params, grads)
    results[label] = time.perf_counter() - start
  for label, seconds in results.items():
    ratio = seconds / results["optax"] if "optax" in results else float("nan")
    print(f"  {label:16s} {seconds:7.2f} s  ({ratio:.2f} x optax)")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="Use smaller shapes and fewer rounds, for a smoke run "
                           "(default: off).")
  parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS),
                      choices=list(OPTIMIZERS),
                      help="The optimizers to time (default: all of them).")
  parser.add_argument("--shapes", nargs="+", default=None,
                      help=f"The pytree shapes to time, a subset of {list(SHAPES)}, or of "
                           f"{list(QUICK_SHAPES)} with --quick (default: all of them).")
  parser.add_argument("--rounds", type=int, default=None,
                      help="The number of timing rounds per shape and optimizer (default: "
                           "11, or 3 with --quick).")
  parser.add_argument("--no-compile", action="store_true",
                      help="Skip the table of compile times for the 2000-leaf tree "
                           "(default: off).")
  args = parser.parse_args()

  shapes = QUICK_SHAPES if args.quick else SHAPES
  if args.shapes:
    shapes = {k: v for k, v in shapes.items() if k in args.shapes}
  rounds = args.rounds or (3 if args.quick else 11)
  print(f"gradtx benchmark: jax {jax.__version__} on {jax.devices()[0].device_kind} "
        f"({platform.processor() or platform.machine()}, {jax.local_device_count()} device)")
  bench_steps(shapes, args.optimizers, rounds, per_round=3 if args.quick else 5)
  if not args.no_compile:
    bench_compile(*((200, 200) if args.quick else (2000, 2000)))


if __name__ == "__main__":
  main()

"""Trains a Flax MLP on scikit-learn's digits twice: on the params tree, then packed.

``gtx.pack`` lays the params out as one buffer per dtype, so the jitted step takes (and
returns) a few arrays instead of one per parameter and per moment: the runtime's cost per
array crossing the step, paid whatever the array's size, no longer grows with the
model's number of parameter arrays. The code changes are two lines of the
``TrainState``: ``params=gtx.pack(params)`` and ``apply_fn=gtx.flax.unpack_args(...)``;
the train step is the same function for both runs.

The model is a deep MLP (Dense + LayerNorm per layer, four arrays each). The script
prints, for each run, the arrays crossing the step, the training loss as it falls, and
the time per step; then how far apart the two runs' params ended: the same arithmetic
summed in another order, whose float32 rounding differences training then amplifies:

    python examples/packed_flax.py
    python examples/packed_flax.py --depth 32 --steps 300
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.training import train_state
from sklearn.datasets import load_digits

import gradtx as gtx


class DeepMLP(nn.Module):
  depth: int
  width: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.LayerNorm()(nn.gelu(nn.Dense(self.width)(x)))
    return nn.Dense(10)(x)


@jax.jit
def train_step(state, x, y):
  """One AdamW step; ``state.params`` is the plain tree or a ``gtx.Packed``."""
  def loss_fn(params):
    logits = state.apply_fn({"params": params}, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


def create_state(apply_fn, params, tx) -> train_state.TrainState:
  """``TrainState.create``, run under jit: ``tx.init`` is one compilation instead of
  one per operation."""
  return jax.jit(lambda p: train_state.TrainState.create(apply_fn=apply_fn, params=p,
                                                         tx=tx))(params)


def train(state, x, y, steps: int, batch_size: int, seed: int, name: str):
  print(f"{name}: {len(jax.tree.leaves(state))} arrays cross the step")
  rng = np.random.default_rng(seed)
  batches = [rng.choice(len(x), batch_size, replace=False) for _ in range(steps)]
  state, loss = train_step(state, x[batches[0]], y[batches[0]])  # compiles
  jax.block_until_ready(state)
  start = time.perf_counter()
  for step, batch in enumerate(batches[1:], start=2):
    state, loss = train_step(state, x[batch], y[batch])
    if step % max(1, steps // 5) == 0 or step == steps:
      print(f"  step {step:4d}  loss {float(loss):.4f}")
  jax.block_until_ready(state)
  per_step = (time.perf_counter() - start) / max(1, steps - 1)
  print(f"  {per_step * 1e3:.2f} ms per step")
  return state, float(loss)


def main(argv: list[str] | None = None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=200,
                      help="Optimizer steps per run (default: %(default)s).")
  parser.add_argument("--depth", type=int, default=16,
                      help="Dense + LayerNorm layers (default: %(default)s).")
  parser.add_argument("--width", type=int, default=64,
                      help="Width of the hidden layers (default: %(default)s).")
  parser.add_argument("--batch-size", type=int, default=128,
                      help="Examples per step (default: %(default)s).")
  parser.add_argument("--lr", type=float, default=1e-3,
                      help="AdamW's learning rate (default: %(default)s).")
  parser.add_argument("--seed", type=int, default=0,
                      help="Seeds the initial weights and the batches (default: "
                           "%(default)s).")
  args = parser.parse_args(argv)

  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  model = DeepMLP(args.depth, args.width)
  params = jax.jit(model.init)(jax.random.key(args.seed), x[:1])["params"]
  tx = gtx.adamw(args.lr, weight_decay=1e-4)

  plain = create_state(model.apply, params, tx)
  plain, plain_loss = train(plain, x, y, args.steps, args.batch_size, args.seed,
                            "params tree")

  # The two changed lines: packed params, and an apply_fn that takes them.
  packed = create_state(gtx.flax.unpack_args(model.apply), gtx.pack(params), tx)
  packed, packed_loss = train(packed, x, y, args.steps, args.batch_size, args.seed,
                              "packed params")

  difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
      jax.tree.leaves(gtx.unpack(packed.params)), jax.tree.leaves(plain.params)))
  print(f"largest difference between the two runs' params: {difference:.2e}")
  return {"plain_loss": plain_loss, "packed_loss": packed_loss,
          "plain_arrays": len(jax.tree.leaves(plain)),
          "packed_arrays": len(jax.tree.leaves(packed)), "difference": difference}


if __name__ == "__main__":
  main()

"""SGD without a learning rate: the probabilistic line search against tuned SGD.

Mahsereci & Hennig's probabilistic line search (``gtx.probabilistic_linesearch``) picks
SGD's step sizes from the noisy mini-batch losses and gradients it sees, one evaluation
per step. This script trains two models on scikit-learn's handwritten digits (1,797 8x8
images, shipped with scikit-learn: nothing is downloaded) with mini-batches:

* ``logistic``: multinomial logistic regression (64 -> 10);
* ``mlp``: the MLP of ``compare_optimizers.py`` (64 -> 128, LayerNorm, ReLU, -> 128, ReLU,
  -> 10), written in plain JAX,

with the line search (no learning rate; the variances of the mini-batch loss and
gradient from ``gtx.probabilistic_linesearch_variances``) and with plain SGD at each of
ten log-spaced learning rates, for the same number of mini-batch steps on the same
batches, and prints the final training loss (on the whole training set) of each::

    python examples/probabilistic_linesearch.py
    python examples/probabilistic_linesearch.py --problems mlp --seeds 3 --steps 300

Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx

try:
  from sklearn.datasets import load_digits
except ImportError as error:  # pragma: no cover - depends on the environment
  raise SystemExit("probabilistic_linesearch.py needs scikit-learn: pip install "
                   "scikit-learn") from error

LEARNING_RATES = np.logspace(-3, 1, 10)


def init_params(problem: str, key: jax.Array) -> dict:
  def dense(key, n_in, n_out):
    return {"w": jax.random.normal(key, (n_in, n_out)) * jnp.sqrt(2.0 / n_in),
            "b": jnp.zeros(n_out)}

  if problem == "logistic":
    return {"out": {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}}
  k1, k2, k3 = jax.random.split(key, 3)
  return {"dense1": dense(k1, 64, 128), "norm": {"scale": jnp.ones(128), "bias": jnp.zeros(128)},
          "dense2": dense(k2, 128, 128), "out": dense(k3, 128, 10)}


def logits(params: dict, x: jax.Array) -> jax.Array:
  if "dense1" in params:
    h = x @ params["dense1"]["w"] + params["dense1"]["b"]
    h = (h - h.mean(-1, keepdims=True)) * jax.lax.rsqrt(h.var(-1, keepdims=True) + 1e-6)
    h = jax.nn.relu(h * params["norm"]["scale"] + params["norm"]["bias"])
    x = jax.nn.relu(h @ params["dense2"]["w"] + params["dense2"]["b"])
  return x @ params["out"]["w"] + params["out"]["b"]


def example_loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
  """Cross-entropy of one example."""
  return -jax.nn.log_softmax(logits(params, x))[y]


def mean_loss(params, x, y):
  return jnp.mean(jax.vmap(example_loss, (None, 0, 0))(params, x, y))


def train_sgd(params, batches, data, learning_rates):
  """Final training loss of SGD at each learning rate (one compiled run for all)."""
  x, y = data

  def run(lr):
    def step(p, batch):
      grads = jax.grad(mean_loss)(p, x[batch], y[batch])
      return jax.tree.map(lambda w, g: w - lr * g, p, grads), None

    final, _ = jax.lax.scan(step, params, batches)
    return mean_loss(final, x, y)

  return jax.jit(jax.vmap(run))(jnp.asarray(learning_rates, jnp.float32))


def train_probls(params, batches, data):
  """Final training loss with the probabilistic line search, and its diagnostics."""
  x, y = data
  tx = gtx.chain(gtx.scale(-1.0), gtx.probabilistic_linesearch())

  def step(carry, batch):
    p, state = carry
    values, grads = jax.vmap(jax.value_and_grad(example_loss), (None, 0, 0))(
        p, x[batch], y[batch])
    value_var, grad_var = gtx.probabilistic_linesearch_variances(values, grads)
    grad = jax.tree.map(lambda g: g.mean(0), grads)
    updates, state = tx.update(grad, state, p, value=values.mean(), grad=grad,
                               value_var=value_var, grad_var=grad_var)
    return (gtx.apply_updates(p, updates), state), None

  @jax.jit
  def run(params):
    (final, state), _ = jax.lax.scan(step, (params, tx.init(params)), batches)
    return mean_loss(final, x, y), state[1].info

  return run(params)


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--problems", default="logistic,mlp")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seeds", type=int, default=3)
  args = parser.parse_args(argv)

  digits = load_digits()
  data = (jnp.asarray(digits.data / 16.0, jnp.float32), jnp.asarray(digits.target))
  results = {}
  start = time.perf_counter()
  for problem in args.problems.split(","):
    for seed in range(args.seeds):
      rng = np.random.default_rng(seed)
      batches = jnp.asarray(np.stack([rng.choice(len(digits.target), args.batch_size,
                                                 replace=False) for _ in range(args.steps)]))
      params = init_params(problem, jax.random.key(seed))
      sgd = np.asarray(train_sgd(params, batches, data, LEARNING_RATES))
      probls, info = train_probls(params, batches, data)
      best = int(np.nanargmin(sgd))
      ratio = float(probls) / float(sgd[best])
      results[problem, seed] = dict(probls=float(probls), sgd=sgd.tolist(), best_lr=float(
          LEARNING_RATES[best]), ratio=ratio)
      print(f"{problem:8s} seed {seed}: line search {float(probls):.4f} "
            f"({int(info.num_searches)} searches, {int(info.num_fallbacks)} fallbacks, last "
            f"step size {float(info.learning_rate):.3g}); best SGD {sgd[best]:.4f} at lr "
            f"{LEARNING_RATES[best]:.3g}; ratio {ratio:.2f}")
      print("          SGD by lr: " + ", ".join(
          f"{lr:.2g}: {loss:.3f}" for lr, loss in zip(LEARNING_RATES, sgd)))
  print(f"{args.steps} mini-batch steps of {args.batch_size}; "
        f"{time.perf_counter() - start:.0f} s")
  return results


if __name__ == "__main__":
  main()

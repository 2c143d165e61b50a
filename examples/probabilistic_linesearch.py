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
    python examples/probabilistic_linesearch.py --oracles   # ~6 minutes on 2 cores

``--oracles`` also trains along the same mini-batch gradients with step sizes that
*oracles* choose from the exact loss of the whole training set along each line (which
the line search only estimates from mini-batches): the line's minimum, the largest step
meeting the strong Wolfe conditions with the line search's constants, and the largest
meeting sufficient decrease alone. They show what choosing steps by these rules costs
against a tuned learning rate over a short run, with no noise at all.

Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import functools
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
# --oracles: the step sizes the oracles choose from: 0, or first 10 a decade from 1e-3 to
# 30, then 16 more between the one chosen and the next (1.4% apart; around a minimum,
# between its neighbours, 2.7%).
ORACLE_STEPS = np.logspace(-3, 1.5, 46)
ORACLE_REFINE = 16
# How each oracle picks a step along the mini-batch gradient from the exact line of the
# whole training set's loss: the lowest point, or the largest step meeting the strong
# Wolfe conditions with the line search's constants (c1, c2), or sufficient decrease alone.
ORACLES = {"line minimum": None,
           "largest strong-Wolfe step": (0.05, 0.5),
           "largest sufficient-decrease step": (0.05, None)}


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


@functools.partial(jax.jit, static_argnames="rule")
def train_oracle(params, batches, data, rule):
  """Final training loss, and the step sizes taken, when every step goes along the same
  mini-batch gradient as SGD but as far as ``rule`` (a key of ``ORACLES``) picks from the
  exact loss of the whole training set along that line: what a line search with perfect
  knowledge of the loss it estimates would do, and the steps such rules can take at most."""
  x, y = data
  coarse = jnp.asarray(ORACLE_STEPS, jnp.float32)
  constants = ORACLES[rule]

  def step(p, batch):
    grads = jax.grad(mean_loss)(p, x[batch], y[batch])
    along = lambda t: jax.tree.map(lambda w, g: w - t * g, p, grads)  # noqa: E731
    line = lambda t: mean_loss(along(t), x, y)  # noqa: E731
    value0, slope0 = jax.value_and_grad(line)(jnp.zeros([], jnp.float32))

    def choose(ts):
      """The index of the step the rule takes among ``ts`` (-1: none of them)."""
      if constants is None:  # the lowest, if lower than at 0
        values = jax.vmap(line)(ts)
        values = jnp.where(jnp.isnan(values), jnp.inf, values)
        return jnp.where(jnp.min(values) < value0, jnp.argmin(values), -1)
      c1, c2 = constants
      if c2 is None:
        values = jax.vmap(line)(ts)
        ok = values <= value0 + c1 * ts * slope0
      else:
        values, slopes = jax.vmap(jax.value_and_grad(line))(ts)
        ok = (values <= value0 + c1 * ts * slope0) & (jnp.abs(slopes) <= c2 * jnp.abs(slope0))
      return jnp.max(jnp.where(ok, jnp.arange(ts.shape[0]), -1))

    k = choose(coarse)
    # Then finer between the chosen step's neighbours (a minimum) or it and the next.
    low = coarse[jnp.maximum(k - (constants is None), 0)]
    high = coarse[jnp.minimum(k + 1, coarse.shape[0] - 1)] * jnp.where(
        k + 1 >= coarse.shape[0], coarse[1] / coarse[0], 1.0)
    fine = jnp.exp(jnp.linspace(jnp.log(low), jnp.log(high), ORACLE_REFINE + 2))
    j = choose(fine)
    t = jnp.where((k < 0) | (j < 0), 0.0, fine[j])
    return along(t), t

  final, steps = jax.lax.scan(step, params, batches)
  return mean_loss(final, x, y), steps


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--problems", default="logistic,mlp")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--oracles", action="store_true",
                      help="also train with step sizes chosen on the exact loss of the "
                      "whole training set along the same mini-batch gradients")
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
      if args.oracles:
        oracles = {rule: train_oracle(params, batches, data, rule) for rule in ORACLES}
        results[problem, seed]["oracles"] = {
            rule: float(loss) for rule, (loss, _) in oracles.items()}
        print("          exact line (whole training set): " + ", ".join(
            f"{rule} {float(loss):.4f} ({float(loss) / sgd[best]:.2f}x, median step "
            f"{float(jnp.median(steps)):.2g})" for rule, (loss, steps) in oracles.items()))
  print(f"{args.steps} mini-batch steps of {args.batch_size}; "
        f"{time.perf_counter() - start:.0f} s")
  return results


if __name__ == "__main__":
  main()

"""Full-batch L2-regularised logistic regression on digits: L-BFGS vs Newton vs
Hessian-free, each run to the same gradient tolerance by ``gtx.minimize``.

The data set ships with scikit-learn (nothing is downloaded). The objective is the mean
softmax cross-entropy of a linear model on 8x8 digit images plus ``l2/2 |params|^2``,
strongly convex, in float64. The script prints one row per method: steps, evaluations
of the objective, final value, gradient norm, wall time (compiled, second call) and test
accuracy:

    python examples/logistic_second_order.py
    python examples/logistic_second_order.py --classes 3 --tol 1e-6
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import gradtx as gtx


def make_problem(n_classes: int, l2: float, seed: int):
  digits = load_digits()
  keep = digits.target < n_classes
  x, y = digits.data[keep] / 16.0, digits.target[keep]
  x_train, x_test, y_train, y_test = train_test_split(
      x, y, test_size=0.25, random_state=seed, stratify=y)
  x_train, x_test = jnp.asarray(x_train), jnp.asarray(x_test)

  def logits(params, x):
    return x @ params["w"] + params["b"]

  def loss(params):
    log_probs = jax.nn.log_softmax(logits(params, x_train))
    nll = -jnp.mean(jnp.take_along_axis(log_probs, jnp.asarray(y_train)[:, None], axis=1))
    return nll + 0.5 * l2 * sum(jnp.sum(p**2) for p in jax.tree.leaves(params))

  def accuracy(params):
    return float(jnp.mean(jnp.argmax(logits(params, x_test), axis=1) == jnp.asarray(y_test)))

  x0 = {"w": jnp.zeros((64, n_classes)), "b": jnp.zeros(n_classes)}
  return loss, x0, accuracy


def main(argv: list[str] | None = None) -> dict[str, gtx.GradientTransformation]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--classes", type=int, default=10,
                      help="Use the digits 0 to classes-1 (default: %(default)s).")
  parser.add_argument("--l2", type=float, default=1e-3,
                      help="The L2 regularisation strength (default: %(default)s).")
  parser.add_argument("--tol", type=float, default=1e-8,
                      help="Stop when the gradient's norm is at most this "
                           "(default: %(default)s).")
  parser.add_argument("--max-steps", type=int, default=500,
                      help="The most steps per method (default: %(default)s).")
  parser.add_argument("--seed", type=int, default=0,
                      help="Seeds the train/test split (default: %(default)s).")
  args = parser.parse_args(argv)

  with jax.enable_x64(True):
    loss, x0, accuracy = make_problem(args.classes, args.l2, args.seed)
    n = sum(p.size for p in jax.tree.leaves(x0))
    methods = {"lbfgs": gtx.lbfgs(), "newton": gtx.newton(max_params=max(5000, n)),
               "hessian_free": gtx.hessian_free()}
    print(f"digits 0-{args.classes - 1}: {n} params, gradient tolerance {args.tol:g}")
    print(f"{'method':<14}{'steps':>6}{'f evals':>9}{'value':>20}{'grad norm':>11}"
          f"{'time s':>8}{'test acc':>10}")
    results = {}
    for name, tx in methods.items():
      result = gtx.minimize(loss, x0, tx, max_steps=args.max_steps, tol=args.tol)
      jax.block_until_ready(result)  # the first call compiles; time the second
      start = time.perf_counter()
      result = jax.block_until_ready(
          gtx.minimize(loss, x0, tx, max_steps=args.max_steps, tol=args.tol))
      seconds = time.perf_counter() - start
      results[name] = result
      print(f"{name:<14}{int(result.num_steps):>6}{int(result.num_fun_evals):>9}"
            f"{float(result.value):>20.15f}{float(result.grad_norm):>11.2e}"
            f"{seconds:>8.3f}{accuracy(result.params):>10.4f}"
            f"{'' if bool(result.converged) else '  (not converged)'}")
  return results


if __name__ == "__main__":
  main()

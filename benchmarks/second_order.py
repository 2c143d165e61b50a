"""Full-batch solvers to a gradient-norm tolerance: gradtx against SciPy and jaxopt.

Problems (all in float64, x0 fixed, data with fixed seeds):

- ``rosenbrock-2`` and ``rosenbrock-100``: the chained Rosenbrock function
  ``sum 100 (x[i+1] - x[i]**2)**2 + (1 - x[i])**2`` from ``(-1.2, 1, -1.2, 1, ...)``;
- ``digits-lr``: L2-regularised multinomial logistic regression on scikit-learn's digits
  (all 1797 images, 10 classes, pixels / 16), mean softmax cross-entropy plus
  ``lambda/2 |params|^2`` with ``lambda = 1e-3``, params ``{"w": (64, 10), "b": (10,)}``
  (650 params) from zero;
- ``peaks-nls``: a nonlinear least-squares fit, ``1/2 sum r_i**2``, of three Gaussian
  peaks and a baseline (``{"amplitude", "center", "log_width": (3,), "baseline": ()}``,
  10 params) to 200 noisy samples.

Methods:

- SciPy (``scipy.optimize.minimize``) with JAX-jitted callbacks on the raveled params:
  ``L-BFGS-B`` (``maxcor=10``, ``maxls=20``), ``Newton-CG`` and ``trust-ncg`` with exact
  Hessian-vector products (``hessp``, forward-over-reverse);
- ``jaxopt.LBFGS`` (its defaults: history 10, zoom line search), jitted;
- ``gtx.minimize`` with ``gtx.lbfgs()``, ``gtx.newton()`` and ``gtx.hessian_free()``.

The stopping criterion is the same for all: the 2-norm of the gradient over all params,
``||grad f(x)||_2 <= tol`` (``--tol``, 1e-5 by default; each objective is scaled so that
its gradient at x0 is of order 1 to 1000). ``gtx.minimize``, ``jaxopt.LBFGS`` and
``trust-ncg`` (``gtol``) test exactly this after every step. ``L-BFGS-B`` tests the
infinity norm and a relative decrease of f, and ``Newton-CG`` the size of the step:
those tests are switched off (``gtol=0, ftol=0``; ``xtol=1e-30``) and a callback stops
them by raising ``StopIteration`` once the 2-norm at the new iterate is at most ``tol``
(read from the evaluation the solver just made, not recomputed). Every row reports the
value and gradient norm recomputed at the returned params, so a method that stopped
early or late shows it.

Counting: ``f evals`` counts the points at which the objective was evaluated, a value,
a gradient or both at one point counting once. For gradtx that is
``MinimizeResult.num_fun_evals``; for jaxopt ``state.num_fun_eval``; for SciPy the number
of distinct points passed to ``fun``/``jac`` (counted by the callbacks, with a small
cache so that ``fun(x)`` then ``jac(x)`` counts one; SciPy's own ``nfev``/``njev`` are
printed below the table). ``HVPs`` counts Hessian-vector products (SciPy's ``hessp``
calls; for ``gtx.hessian_free`` its CG iterations plus one product per step for the
warm start); ``newton`` forms a dense Hessian per step, shown as ``<k>H``.

Wall time is the median over ``--repeats`` runs, taken round-robin over the methods of a
problem, excluding compilation: ``compile`` is the first call's time minus that median
for the JAX methods (for SciPy: compiling the jitted callbacks). OpenBLAS is limited to
one thread (``--blas-threads``, by threadpoolctl): SciPy's OpenBLAS serves both SciPy and
jaxlib's LAPACK calls (the Cholesky of ``gtx.newton``), and its two threads, contending
with XLA's on a busy 2-core machine, made single small calls take 0.1-0.3 s.

Nearby starts (``--starts``, 20 by default): evaluation counts to the tolerance of
L-BFGS-B, jaxopt and the two gradtx L-BFGS configurations from ``x0`` and from starts
``x0 + 1e-6 (1 + |x0|) N(0, 1)``, each its own run. On a problem whose iterates amplify
rounding (100-D Rosenbrock) the count from one start depends on how the rounding of each
implementation falls; the mean over nearby starts does not.

A method whose final value is above the best of its problem (relative 1e-6) is listed
below the table with ``*``: it stopped at another stationary point (on ``rosenbrock-100``
Newton's method and Hessian-free reach the local minimum near ``(-1, 1, ..., 1)``,
f = 3.9866).

    python benchmarks/second_order.py              # the problems above, 7 repeats, and
                                                   # evaluations from 20 nearby starts
    python benchmarks/second_order.py --quick      # smaller problems, 1 repeat: a smoke run
    python benchmarks/second_order.py --linesearch-study   # gradtx lbfgs variants
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import importlib.metadata
import platform
import statistics
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import gradtx as gtx

try:
  import scipy.optimize
except ImportError:  # pragma: no cover
  scipy = None

try:
  import threadpoolctl
except ImportError:  # pragma: no cover
  threadpoolctl = None

try:
  with warnings.catch_warnings():  # "JAXopt is no longer maintained"
    warnings.simplefilter("ignore", DeprecationWarning)
    import jaxopt
except Exception as error:  # pragma: no cover - reported in the output
  jaxopt = None
  JAXOPT_ERROR = f"{type(error).__name__}: {error}"
else:
  JAXOPT_ERROR = None

BASELINE = "scipy L-BFGS-B"
JAXOPT = "jaxopt LBFGS"
OURS = "gtx lbfgs more-thuente"
METHODS = (BASELINE, "scipy Newton-CG", "scipy trust-ncg", JAXOPT, "gtx lbfgs", OURS,
           "gtx newton", "gtx hessian_free")


@dataclasses.dataclass
class Problem:
  name: str
  fun: Callable[[Any], jax.Array]
  x0: Any
  note: str

  @property
  def size(self) -> int:
    return sum(int(np.size(x)) for x in jax.tree.leaves(self.x0))


@dataclasses.dataclass
class Row:
  problem: str
  method: str
  steps: int
  fevals: int
  hvps: str
  value: float
  grad_norm: float
  converged: bool
  seconds: float  # median
  compile_seconds: float | None
  note: str = ""


# ---------------------------------------------------------------------------------------
# Problems.
# ---------------------------------------------------------------------------------------


def rosenbrock(x: jax.Array) -> jax.Array:
  return jnp.sum(100.0 * (x[1:] - x[:-1]**2)**2 + (1.0 - x[:-1])**2)


def rosenbrock_problem(n: int) -> Problem:
  x0 = jnp.tile(jnp.array([-1.2, 1.0]), n // 2 + 1)[:n]
  return Problem(f"rosenbrock-{n}", rosenbrock, x0, "(-1.2, 1, ...)")


def digits_problem(n_classes: int = 10, l2: float = 1e-3,
                   n_samples: int | None = None) -> Problem:
  from sklearn.datasets import load_digits
  digits = load_digits()
  keep = digits.target < n_classes
  x, y = digits.data[keep] / 16.0, digits.target[keep]
  if n_samples is not None:
    x, y = x[:n_samples], y[:n_samples]
  x, y = jnp.asarray(x), jnp.asarray(y)

  def loss(params):
    log_probs = jax.nn.log_softmax(x @ params["w"] + params["b"])
    nll = -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))
    return nll + 0.5 * l2 * (jnp.sum(params["w"]**2) + jnp.sum(params["b"]**2))

  x0 = {"w": jnp.zeros((64, n_classes)), "b": jnp.zeros(n_classes)}
  name = "digits-lr" if n_classes == 10 else f"digits-lr-{n_classes}"
  return Problem(name, loss, x0, f"{len(y)} images, {n_classes} classes, l2={l2:g}")


def peaks_problem(n_points: int = 200, seed: int = 0) -> Problem:
  t = np.linspace(0.0, 10.0, n_points)
  truth = dict(amplitude=np.array([1.0, 0.6, 0.8]), center=np.array([2.5, 5.0, 7.5]),
               log_width=np.log([0.6, 0.9, 0.5]), baseline=np.array(0.1))

  def model(params, t):
    width = jnp.exp(params["log_width"])
    peaks = params["amplitude"] * jnp.exp(
        -0.5 * ((t[:, None] - params["center"]) / width)**2)
    return jnp.sum(peaks, axis=1) + params["baseline"]

  rng = np.random.default_rng(seed)
  data = np.asarray(model(jax.tree.map(jnp.asarray, truth), jnp.asarray(t)))
  data = jnp.asarray(data + 0.02 * rng.standard_normal(n_points))
  t = jnp.asarray(t)

  def loss(params):
    return 0.5 * jnp.sum((model(params, t) - data)**2)

  x0 = dict(amplitude=jnp.array([0.8, 0.8, 0.8]), center=jnp.array([2.0, 5.5, 7.0]),
            log_width=jnp.zeros(3), baseline=jnp.array(0.0))
  return Problem("peaks-nls", loss, x0, f"3 Gaussians + baseline, {n_points} points")


def make_problems(quick: bool) -> list[Problem]:
  if quick:
    return [rosenbrock_problem(2), rosenbrock_problem(10),
            digits_problem(n_classes=3, n_samples=300), peaks_problem(n_points=60)]
  return [rosenbrock_problem(2), rosenbrock_problem(100), digits_problem(), peaks_problem()]


# ---------------------------------------------------------------------------------------
# Runners. Each returns (callable running the method once -> summary dict, compile time).
# ---------------------------------------------------------------------------------------


class Evaluator:
  """SciPy's callbacks on a raveled vector: jitted value-and-gradient and Hessian-vector
  products, counting distinct evaluation points (value and gradient at one point: one)."""

  def __init__(self, value_and_grad, hvp):
    self._value_and_grad = value_and_grad
    self._hvp = hvp
    self._cache: collections.OrderedDict[bytes, tuple[float, np.ndarray]] = (
        collections.OrderedDict())
    self.fevals = 0
    self.hvps = 0

  def _at(self, x: np.ndarray) -> tuple[float, np.ndarray]:
    key = np.asarray(x, np.float64).tobytes()
    if key in self._cache:
      self._cache.move_to_end(key)
      return self._cache[key]
    value, grad = self._value_and_grad(x)
    entry = (float(value), np.asarray(grad))
    self.fevals += 1
    self._cache[key] = entry
    if len(self._cache) > 8:
      self._cache.popitem(last=False)
    return entry

  def fun(self, x):
    return self._at(x)[0]

  def jac(self, x):
    return self._at(x)[1]

  def hessp(self, x, p):
    self.hvps += 1
    return np.asarray(self._hvp(x, p))

  def grad_norm_if_known(self, x) -> float | None:
    entry = self._cache.get(np.asarray(x, np.float64).tobytes())
    return None if entry is None else float(np.linalg.norm(entry[1]))


def flat_callbacks(problem: Problem):
  flat0, unravel = ravel_pytree(problem.x0)
  flat_fun = lambda x: problem.fun(unravel(x))  # noqa: E731
  value_and_grad = jax.jit(jax.value_and_grad(flat_fun))
  grad = jax.grad(flat_fun)
  hvp = jax.jit(lambda x, v: jax.jvp(grad, (x,), (v,))[1])
  return np.asarray(flat0, np.float64), unravel, value_and_grad, hvp


def scipy_runner(problem: Problem, method: str, tol: float, max_steps: int):
  x0, unravel, value_and_grad, hvp = flat_callbacks(problem)
  start = time.perf_counter()
  jax.block_until_ready(value_and_grad(x0))
  jax.block_until_ready(hvp(x0, x0))
  compile_seconds = time.perf_counter() - start

  def run(start=None):
    """One solve, from ``problem.x0`` or from ``start`` (a pytree like it)."""
    x = x0 if start is None else np.asarray(ravel_pytree(start)[0], np.float64)
    ev = Evaluator(value_and_grad, hvp)

    def stop_on_grad_norm(intermediate_result):
      norm = ev.grad_norm_if_known(intermediate_result.x)
      if norm is not None and norm <= tol:
        raise StopIteration

    if method == "L-BFGS-B":
      res = scipy.optimize.minimize(
          ev.fun, x, jac=ev.jac, method="L-BFGS-B", callback=stop_on_grad_norm,
          options=dict(maxiter=max_steps, maxfun=100 * max_steps, maxcor=10, maxls=20,
                       gtol=0.0, ftol=0.0))
    elif method == "Newton-CG":
      res = scipy.optimize.minimize(
          ev.fun, x, jac=ev.jac, hessp=ev.hessp, method="Newton-CG",
          callback=stop_on_grad_norm, options=dict(maxiter=max_steps, xtol=1e-30))
    elif method == "trust-ncg":
      res = scipy.optimize.minimize(
          ev.fun, x, jac=ev.jac, hessp=ev.hessp, method="trust-ncg",
          options=dict(maxiter=max_steps, gtol=tol))
    else:
      raise ValueError(method)
    return dict(x=unravel(jnp.asarray(res.x)), steps=int(res.nit), fevals=ev.fevals,
                hvps=str(ev.hvps) if method != "L-BFGS-B" else "-",
                raw=f"nfev={res.nfev} njev={res.get('njev', '-')} "
                    f"nhev={res.get('nhev', '-')}: {res.message}")

  return run, compile_seconds


def jaxopt_runner(problem: Problem, tol: float, max_steps: int):
  solver = jaxopt.LBFGS(fun=problem.fun, tol=tol, maxiter=max_steps)
  solve = jax.jit(solver.run)

  def run():
    params, state = jax.block_until_ready(solve(problem.x0))
    return dict(x=params, steps=int(state.iter_num), fevals=int(state.num_fun_eval),
                hvps="-", raw="")

  return run


def gradtx_runner(problem: Problem, tx: gtx.GradientTransformation, tol: float,
                  max_steps: int, hvps_from_replay: bool = False, hessians: bool = False):

  def run():
    result = jax.block_until_ready(
        gtx.minimize(problem.fun, problem.x0, tx, max_steps=max_steps, tol=tol))
    hvps = f"{int(result.num_steps)}H" if hessians else "-"
    return dict(x=result.params, steps=int(result.num_steps),
                fevals=int(result.num_fun_evals), hvps=hvps, raw="", result=result)

  if not hvps_from_replay:
    return run

  def run_and_count():
    out = run()
    out["hvps"] = str(hessian_free_products(problem, tx, out["steps"]))
    return out

  return run, run_and_count


def hessian_free_products(problem: Problem, tx: gtx.GradientTransformation,
                          steps: int) -> int:
  """Replays ``steps`` updates of ``hessian_free`` step by step to read its CG counter
  (``minimize`` returns no state): one product per CG iteration, plus one per step for
  the warm start's residual."""
  value_and_grad = jax.jit(jax.value_and_grad(problem.fun))
  update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v, grad=g,
                                                value_fn=problem.fun))
  params, state = problem.x0, tx.init(problem.x0)
  value, grad = value_and_grad(params)
  for _ in range(steps):
    updates, state = update(grad, state, params, value)
    params = gtx.apply_updates(params, updates)
    value, grad = value_and_grad(params)
  return int(state.num_cg_iters) + steps


# ---------------------------------------------------------------------------------------
# The benchmark.
# ---------------------------------------------------------------------------------------


def gradtx_methods(problem: Problem) -> dict[str, gtx.GradientTransformation]:
  return {"gtx lbfgs": gtx.lbfgs(),
          OURS: gtx.lbfgs(linesearch=gtx.scale_by_more_thuente_linesearch(
              first_step_length=1.0)),
          "gtx newton": gtx.newton(max_params=max(5000, problem.size)),
          "gtx hessian_free": gtx.hessian_free()}


def bench_problem(problem: Problem, methods: tuple[str, ...], tol: float, max_steps: int,
                  repeats: int, extra_gradtx: dict[str, gtx.GradientTransformation]
                  | None = None) -> list[Row]:
  check = jax.jit(jax.value_and_grad(problem.fun))
  runners: dict[str, Callable[[], dict]] = {}
  compile_seconds: dict[str, float | None] = {}
  first_runs: dict[str, dict] = {}
  txs = gradtx_methods(problem)
  txs.update(extra_gradtx or {})
  names = list(methods) + list(extra_gradtx or {})
  for name in names:
    if name.startswith("scipy"):
      if scipy is None:
        continue
      run, compile_seconds[name] = scipy_runner(problem, name.split()[1], tol, max_steps)
      first_runs[name] = run()
    elif name == JAXOPT:
      if jaxopt is None:
        continue
      run = jaxopt_runner(problem, tol, max_steps)
      start = time.perf_counter()
      first_runs[name] = run()
      compile_seconds[name] = time.perf_counter() - start
    else:
      tx = txs[name]
      replay = name == "gtx hessian_free"
      made = gradtx_runner(problem, tx, tol, max_steps, hvps_from_replay=replay,
                           hessians=name == "gtx newton")
      run, first = made if replay else (made, made)
      start = time.perf_counter()
      first_runs[name] = first()
      compile_seconds[name] = time.perf_counter() - start  # less the median, below
    runners[name] = run

  times: dict[str, list[float]] = {name: [] for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)

  rows = []
  for name, out in first_runs.items():
    median = statistics.median(times[name]) if times[name] else float("nan")
    compiled = compile_seconds[name]
    if not name.startswith("scipy"):
      compiled = max(compiled - median, 0.0) if times[name] else compiled
    value, grad = check(out["x"])
    grad_norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grad))))
    rows.append(Row(problem.name, name, out["steps"], out["fevals"], out["hvps"],
                    float(value), grad_norm, bool(grad_norm <= tol), median, compiled,
                    out["raw"]))
  return rows


def fmt_ratio(num: float, den: float | None) -> str:
  if den is None or not den or not np.isfinite(den) or not np.isfinite(num):
    return "-"
  return f"{num / den:.2f}"


def print_table(rows: list[Row], baseline_fevals: dict[str, int],
                jaxopt_seconds: dict[str, float]) -> None:
  header = (f"| {'problem':<15}| {'method':<24}| {'steps':>5} | {'f evals':>7} | "
            f"{'HVPs':>5} | {'final value':>22} | {'|g|_2':>8} | conv | {'time ms':>8} | "
            f"{'compile s':>9} | {'fevals/L-BFGS-B':>15} | {'time/jaxopt':>11} |")
  print(header)
  print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
  for r in rows:
    compiled = "-" if r.compile_seconds is None else f"{r.compile_seconds:.2f}"
    print(f"| {r.problem:<15}| {r.method:<24}| {r.steps:>5} | {r.fevals:>7} | {r.hvps:>5} | "
          f"{r.value:>22.15g} | {r.grad_norm:>8.1e} | {'yes' if r.converged else 'NO':>4} | "
          f"{1e3 * r.seconds:>8.2f} | {compiled:>9} | "
          f"{fmt_ratio(r.fevals, baseline_fevals.get(r.problem)):>15} | "
          f"{fmt_ratio(r.seconds, jaxopt_seconds.get(r.problem)):>11} |")


def goal_lines(rows: list[Row]) -> list[str]:
  by = {(r.problem, r.method): r for r in rows}
  lines = []
  for problem in dict.fromkeys(r.problem for r in rows):
    scipy_row, jaxopt_row = by.get((problem, BASELINE)), by.get((problem, JAXOPT))
    for method in ("gtx lbfgs", OURS):
      ours = by.get((problem, method))
      if ours is None:
        continue
      parts = []
      if scipy_row is not None:
        ok = ours.fevals <= scipy_row.fevals
        parts.append(f"f evals {ours.fevals} vs L-BFGS-B {scipy_row.fevals}: "
                     f"{'met' if ok else 'NOT met'}")
      if jaxopt_row is not None:
        ok = ours.seconds < jaxopt_row.seconds
        parts.append(f"time {1e3 * ours.seconds:.2f} ms vs jaxopt "
                     f"{1e3 * jaxopt_row.seconds:.2f} ms: {'met' if ok else 'NOT met'}")
      lines.append(f"  {problem}, {method}: " + "; ".join(parts))
  return lines


def linesearch_variants() -> dict[str, gtx.GradientTransformation]:
  """gradtx L-BFGS with other zoom line search settings (constructor arguments only)."""
  zoom = gtx.scale_by_zoom_linesearch
  return {
      "gtx lbfgs c1=1e-3": gtx.lbfgs(linesearch=zoom(
          max_linesearch_steps=20, initial_guess_strategy="one", slope_rtol=1e-3)),
      "gtx lbfgs no-approx": gtx.lbfgs(linesearch=zoom(
          max_linesearch_steps=20, initial_guess_strategy="one", approx_dec_rtol=None)),
      "gtx lbfgs x4": gtx.lbfgs(linesearch=zoom(
          max_linesearch_steps=20, initial_guess_strategy="one", increase_factor=4.0)),
  }


STUDY_METHODS = (BASELINE, JAXOPT, "gtx lbfgs", OURS)


def nearby_starts(problem: Problem, count: int, seed: int = 0) -> list[Any]:
  """``count`` starts next to ``problem.x0``: ``x0 + 1e-6 (1 + |x0|) xi``, ``xi`` standard
  normal, the first of them ``x0`` itself."""
  rng = np.random.default_rng(seed)
  starts = [problem.x0]
  for _ in range(count - 1):
    starts.append(jax.tree.map(
        lambda x: x + 1e-6 * (1.0 + jnp.abs(x)) * jnp.asarray(rng.standard_normal(x.shape)),
        problem.x0))
  return starts


def starts_study(problem: Problem, count: int, tol: float, max_steps: int
                 ) -> dict[str, list[int]]:
  """Evaluations to the tolerance from each of ``count`` nearby starts, per method of
  ``STUDY_METHODS`` (each start its own run, as a user would make it: not vmapped)."""
  starts = nearby_starts(problem, count)
  counts: dict[str, list[int]] = {}
  txs = gradtx_methods(problem)
  for name in STUDY_METHODS:
    if name == BASELINE and scipy is not None:
      # One set of jitted callbacks for all the starts.
      run_one = scipy_runner(problem, "L-BFGS-B", tol, max_steps)[0]
    elif name == JAXOPT and jaxopt is not None:
      solve = jax.jit(jaxopt.LBFGS(fun=problem.fun, tol=tol, maxiter=max_steps).run)
      run_one = lambda x0, solve=solve: dict(  # noqa: E731
          fevals=int(solve(x0)[1].num_fun_eval))
    elif name.startswith("gtx"):
      tx = txs[name]
      run_one = lambda x0, tx=tx: dict(fevals=int(gtx.minimize(  # noqa: E731
          problem.fun, x0, tx, max_steps=max_steps, tol=tol).num_fun_evals))
    else:
      continue
    counts[name] = [run_one(x0)["fevals"] for x0 in starts]
  return counts


def print_starts_study(problem: Problem, counts: dict[str, list[int]]) -> None:
  baseline = np.asarray(counts.get(BASELINE, []))
  print(f"  {problem.name}, {len(next(iter(counts.values())))} starts:")
  for name, values in counts.items():
    values = np.asarray(values)
    line = (f"    {name:<24} f evals mean {values.mean():8.1f}  median {np.median(values):7.1f}"
            f"  min {values.min():5d}  max {values.max():5d}")
    if baseline.size and name != BASELINE:
      line += (f"  <= L-BFGS-B on {np.mean(values <= baseline):4.0%} of starts, mean "
               f"difference {np.mean(values - baseline):+.1f}")
    print(line)


def versions() -> str:
  names = ["jax", "jaxlib", "numpy", "scipy", "scikit-learn", "jaxopt"]
  found = []
  for name in names:
    try:
      found.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      found.append(f"{name} (not installed)")
  return ", ".join(found)


def main(argv: list[str] | None = None) -> list[Row]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="Use smaller problems and one timed run, for a smoke run "
                           "(default: off).")
  parser.add_argument("--tol", type=float, default=1e-5,
                      help="Stop when the gradient's 2-norm is at most this "
                           "(default: %(default)s).")
  parser.add_argument("--max-steps", type=int, default=2000,
                      help="The most steps per solve (default: %(default)s).")
  parser.add_argument("--repeats", type=int, default=None,
                      help="The number of timed runs per method (default: 7, or 1 with "
                           "--quick).")
  parser.add_argument("--problems", default=None,
                      help="The problems to solve, as comma-separated names (default: all "
                           "of them).")
  parser.add_argument("--methods", default=None,
                      help="The methods to run, as comma-separated names from: "
                           f"{', '.join(METHODS)} (default: all of them).")
  parser.add_argument("--blas-threads", type=int, default=1,
                      help="The number of OpenBLAS threads, used by SciPy and by jaxlib's "
                           "LAPACK calls (default: %(default)s).")
  parser.add_argument("--starts", type=int, default=None,
                      help="Also count evaluations from this many nearby starts, x0 and "
                           "x0 + 1e-6 (1 + |x0|) N(0, 1) (default: 20, or 0 with --quick).")
  parser.add_argument("--linesearch-study", action="store_true",
                      help="Add rows for gradtx's L-BFGS with other zoom line search "
                           "settings (default: off).")
  args = parser.parse_args(argv)
  repeats = args.repeats if args.repeats is not None else (1 if args.quick else 7)
  starts = args.starts if args.starts is not None else (0 if args.quick else 20)
  methods = tuple(METHODS if args.methods is None
                  else [m.strip() for m in args.methods.split(",")])

  print(f"{platform.node()}: {platform.processor() or platform.machine()}, "
        f"{jax.devices()[0].platform}; {versions()}; BLAS threads: "
        f"{args.blas_threads if threadpoolctl is not None else 'default'}")
  if jaxopt is None:
    print(f"NOTE: jaxopt does not import ({JAXOPT_ERROR}); its rows are left out and the "
          "time ratio is not computed.")
  if scipy is None:
    print("NOTE: scipy is not installed; its rows are left out.")
  print(f"stopping test for every method: ||grad f(x)||_2 <= {args.tol:g}; "
        f"max {args.max_steps} steps; time: median of {repeats} runs")

  rows: list[Row] = []

  def limits():
    return (contextlib.nullcontext() if threadpoolctl is None or args.blas_threads <= 0
            else threadpoolctl.threadpool_limits(args.blas_threads, user_api="blas"))

  with limits(), jax.enable_x64(True):
    problems = make_problems(args.quick)
    if args.problems is not None:
      wanted = {p.strip() for p in args.problems.split(",")}
      problems = [p for p in problems if p.name in wanted]
    for problem in problems:
      print(f"  {problem.name}: {problem.size} params, {problem.note}", flush=True)
      rows += bench_problem(problem, methods, args.tol, args.max_steps, repeats,
                            linesearch_variants() if args.linesearch_study else None)

  baseline = {r.problem: r.fevals for r in rows if r.method == BASELINE}
  jaxopt_seconds = {r.problem: r.seconds for r in rows if r.method == JAXOPT}
  print()
  print_table(rows, baseline, jaxopt_seconds)
  print()
  for r in rows:
    if r.note:
      print(f"  {r.problem} {r.method}: {r.note}")
  best = {}
  for r in rows:
    best[r.problem] = min(best.get(r.problem, np.inf), r.value)
  others = [r for r in rows if r.value > best[r.problem] + 1e-6 * max(1.0, abs(best[r.problem]))]
  for r in others:
    print(f"  * {r.problem} {r.method}: another stationary point, f = {r.value:.6g} "
          f"(best {best[r.problem]:.6g})")
  print("\ngoal (f evals <= SciPy L-BFGS-B, time < jaxopt):")
  for line in goal_lines(rows):
    print(line)
  if starts > 0:
    print(f"\nf evals from {starts} nearby starts (the first is x0; each run separately):")
    with limits(), jax.enable_x64(True):
      for problem in problems:
        print_starts_study(problem, starts_study(problem, starts, args.tol,
                                                 args.max_steps))
  return rows


if __name__ == "__main__":
  main()

"""Scoring optimizers on the unit tests of Schaul, Antonoglou & Silver 2014.

Each optimizer runs 100 steps from the case's start point on each of 10 seeds; its
result on a case is the median over the seeds of the expected (noise-free) value at the
final point. A seed whose value is ever NaN or above 1e10 has diverged; with fewer than
half the seeds left the case counts as diverged. The median is normalised against the
best median of plain SGD over 34 log-spaced learning rates in [1e-10, 1] (chosen per
case): ``(f - f0) / (f_sgd - f0)``, ``f0`` the value at the start; 1 means as good as
tuned SGD. Cases where no SGD rate improves on ``f0`` have no reference and are left
out, as in the authors' code. The categories, with the paper's colours:

  * ``diverged`` (red): median above 1e10 or NaN, or most seeds diverged;
  * ``no progress`` (orange): normalised value at most 0.1;
  * ``unreliable`` (yellow; violet in the paper when caused by diverging seeds): more
    than a quarter of the seeds reach less than 0.1, or some seeds diverged;
  * ``better than twice SGD`` (blue): normalised value above 2;
  * ``comparable to SGD`` (green): the rest.

Everything for one optimizer (all cases, seeds and learning rates) is one jitted call:
``vmap`` over learning rates, cases and seeds around a ``lax.scan`` over the steps, one
block for the 1-D cases and one for the others (2-D cases padded to 10-D with
coordinates that are constant 0), so that each block's arrays have one shape.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx
from gradtx.landscapes import arrays, schaul

SGD_LEARNING_RATES = tuple(float(v) for v in np.exp(np.linspace(-10, 0, 34) * np.log(10)))
"""The reference grid: 34 log-spaced rates in [1e-10, 1], as the authors' ``sgdLearningRate``."""

LEARNING_RATES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""The default grid for optimizers given as ``learning_rate -> transform``: the authors'
``learningRate`` list for every algorithm other than plain SGD."""

CATEGORIES = ("diverged", "no progress", "unreliable", "comparable to SGD",
              "better than twice SGD")
"""Result categories, worst first."""

COLOURS = {"diverged": "#d62728", "no progress": "#ff7f0e", "unreliable": "#f2d338",
           "comparable to SGD": "#2ca02c", "better than twice SGD": "#1f77b4",
           "no reference": "#d9d9d9"}
"""The paper's colour for each category (grey: no SGD reference, left out)."""

DIVERGED_ABOVE = 1e10
NO_PROGRESS_AT_MOST = 0.1
BETTER_ABOVE = 2.0


@dataclasses.dataclass
class SuiteResult:
  """The table ``run_suite`` returns.

  Attributes:
    records: one dict per (optimizer, case) with the keys ``optimizer``, ``case``,
      ``group``, ``dim``, ``category``, ``normalised``, ``value`` (median expected
      value at the end), ``initial_value``, ``sgd_value``, ``sgd_learning_rate``,
      ``learning_rate`` (the best of the grid for this case, None for a fixed
      transform) and ``diverged_seeds``; ready for ``pandas.DataFrame(result.records)``.
      Cases without an SGD reference have category ``"no reference"``.
    optimizers: the names, in the order given.
    seconds: wall time of the run, compilation included.
  """

  records: list[dict[str, Any]]
  optimizers: tuple[str, ...]
  seconds: float = 0.0

  def counts(self, by_group: bool = False) -> dict:
    """``{optimizer: {category: count}}`` over the cases with a reference (or
    ``{(optimizer, group): {...}}`` with ``by_group``)."""
    out = {}
    for r in self.records:
      if r["category"] == "no reference":
        continue
      key = (r["optimizer"], r["group"]) if by_group else r["optimizer"]
      out.setdefault(key, dict.fromkeys(CATEGORIES, 0))[r["category"]] += 1
    return out

  def groups(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r["group"] for r in self.records))

  def __str__(self):
    counts = self.counts()
    scored = sum(1 for r in self.records if r["optimizer"] == self.optimizers[0]
                 and r["category"] != "no reference")
    total = sum(1 for r in self.records if r["optimizer"] == self.optimizers[0])
    width = max([9] + [len(n) for n in self.optimizers])
    heads = ["diverged", "no progr.", "unreliable", "~SGD", ">2x SGD", "median"]
    lines = [f"Schaul et al. 2014 unit tests: {scored} of {total} cases scored "
             f"(% of cases; median normalised value, tuned SGD = 1)",
             f"{'optimizer':<{width}} " + " ".join(f"{h:>10}" for h in heads)]
    for name in self.optimizers:
      row = counts.get(name, dict.fromkeys(CATEGORIES, 0))
      values = [r["normalised"] for r in self.records if r["optimizer"] == name
                and r["category"] != "no reference"]
      median = float(np.median(values)) if values else math.nan
      lines.append(f"{name:<{width}} " + " ".join(
          f"{100 * row[c] / max(scored, 1):>9.1f}%" for c in CATEGORIES) + f" {median:>10.3g}")
    return "\n".join(lines)

  def __repr__(self):
    return f"SuiteResult({len(self.records)} records, optimizers={list(self.optimizers)})"


def _as_factory(entry: Any) -> tuple[Callable[[Any], Any], bool]:
  if isinstance(entry, gtx.GradientTransformation) or (
      hasattr(entry, "init") and hasattr(entry, "update")):
    return (lambda lr: entry), False
  if callable(entry):
    return entry, True
  raise TypeError(f"run_suite: an optimizer must be a gradient transformation or a "
                  f"function learning_rate -> transformation, got {type(entry).__name__}")


def _trajectory_ends(factory, learning_rates, groups):
  """For each group: initial and final expected values and diverged flags, ``(L, C, S)``."""

  def one(learning_rate, problem):
    tx = factory(learning_rate)
    x0 = problem["x0"]
    state = tx.init(x0)

    def step(carry, t):
      x, state, bad = carry
      value, grad, expected = arrays.objective(problem, x, t)
      updates, state = tx.update(grad, state, x, value=value)
      x = gtx.apply_updates(x, updates)
      return (x, state, bad | ~(expected <= DIVERGED_ABOVE)), None

    steps = problem["noise"].shape[0]
    (x, _, bad), _ = jax.lax.scan(step, (x0, state, jnp.zeros((), bool)), jnp.arange(steps))
    final = arrays.expected_value(problem, x, jnp.asarray(steps - 1))
    initial = arrays.expected_value(problem, x0, jnp.asarray(0))
    return initial, final, bad | ~(final <= DIVERGED_ABOVE)

  per_seed = jax.vmap(one, in_axes=(None, 0))
  per_case = jax.vmap(per_seed, in_axes=(None, 0))
  per_rate = jax.vmap(per_case, in_axes=(0, None))
  return [per_rate(learning_rates, g) for g in groups]


@functools.lru_cache(maxsize=4)
def _prepared(cases: tuple[schaul.Case, ...], seeds: tuple[int, ...], steps: int):
  """The cases in two groups, 1-D and multi-dimensional (padded to the largest), in run
  order, and each group's device arrays."""
  by_dim = {}
  for c in cases:
    by_dim.setdefault(c.dim > 1, []).append(c)
  groups = [arrays.build_group(cs, seeds, steps) for _, cs in sorted(by_dim.items())]
  return [c for g in groups for c in g.cases], [g.problem_arrays() for g in groups]


def _medians(finals: np.ndarray, bad: np.ndarray):
  """Median over seeds of the valid runs (inf where fewer than half are valid)."""
  seeds = finals.shape[-1]
  valid = ~bad
  masked = np.where(valid, finals, np.nan)
  with np.errstate(all="ignore"):
    import warnings
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)
      med = np.nanmedian(masked, -1)
  return np.where(valid.sum(-1) < seeds / 2, np.inf, med)


def _run(factory, learning_rates, arrays):
  """``(initial (C,), finals (L, C, S), diverged (L, C, S))``, one compilation."""
  run = jax.jit(functools.partial(_trajectory_ends, factory))
  ends = run(jnp.asarray(learning_rates, jnp.float32), arrays)
  initial = np.concatenate([np.asarray(i[0, :, 0], np.float64) for i, _, _ in ends])
  finals = np.concatenate([np.asarray(f, np.float64) for _, f, _ in ends], 1)
  bad = np.concatenate([np.asarray(b) for _, _, b in ends], 1)
  return initial, finals, bad


def run_suite(optimizers: Mapping[str, Any], *, learning_rates: Sequence[float] = LEARNING_RATES,
              filter: Any = None, cases: Sequence[schaul.Case] | None = None,
              seeds: int | Sequence[int] = 10, steps: int = 100,
              progress: Callable[[int, int, str], None] | None = None) -> SuiteResult:
  """Scores optimizers on the Schaul et al. 2014 unit tests.

  Args:
    optimizers: ``{name: transform}`` (run as given) or ``{name: fn}`` with
      ``fn(learning_rate) -> transform``, run at every rate of ``learning_rates`` and
      scored per case at its best rate (as the SGD reference is). ``fn`` is called
      with a traced learning rate under ``vmap``, so a rate grid compiles once; gradtx
      constructors accept traced hyperparameters. Each transform gets the gradient,
      the params and ``value=`` (the noisy loss).
    learning_rates: the grid for the ``fn`` entries.
    filter: which cases to run (see :func:`gradtx.landscapes.select`): a substring of
      the case name or group (``"1-D"``, ``"rotated"``, ``"quad_bowl"``), a list of
      them, or a predicate on a :class:`~gradtx.landscapes.Case`.
    cases: an explicit list of cases instead of the suite.
    seeds: the number of seeds (``0..n-1``) or the seeds themselves.
    steps: optimisation steps per run (the paper: 100).
    progress: called as ``progress(done, total, name)`` before and after each
      optimizer (the SGD reference counts as one).

  Returns:
    A :class:`SuiteResult`: ``print`` it for the table, ``.records`` for pandas.
  """
  import time
  begin = time.perf_counter()
  chosen = schaul.select(cases, filter)
  if not chosen:
    raise ValueError("run_suite: the filter selects no case")
  seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
  if not seeds or steps < 1:
    raise ValueError("run_suite: needs at least one seed and one step")
  factories = {name: _as_factory(entry) for name, entry in optimizers.items()}
  total = len(factories) + 1
  report = progress or (lambda done, total, name: None)

  report(0, total, "SGD reference")
  order, arrays = _prepared(chosen, seeds, int(steps))
  initial, sgd_final, sgd_bad = _reference(chosen, seeds, int(steps))
  sgd_median = _medians(sgd_final, sgd_bad)                      # (34, C)
  best = np.argmin(np.where(np.isfinite(sgd_median), sgd_median, np.inf), 0)
  sgd_value = sgd_median[best, np.arange(len(order))]
  has_reference = np.isfinite(sgd_value) & (sgd_value < initial)
  report(1, total, "SGD reference")

  records = []
  for i, (name, (factory, gridded)) in enumerate(factories.items()):
    report(i + 1, total, name)
    rates = tuple(learning_rates) if gridded else (0.0,)
    _, finals, bad = _run(factory, rates, arrays)                # (L, C, S)
    medians = _medians(finals, bad)
    pick = np.argmin(np.where(np.isnan(medians), np.inf, medians), 0)
    cols = np.arange(len(order))
    records += _score(name, order, finals[pick, cols], bad[pick, cols], medians[pick, cols],
                      initial, sgd_value, has_reference,
                      np.asarray(SGD_LEARNING_RATES)[best],
                      np.asarray(rates)[pick] if gridded else None)
    report(i + 2, total, name)
  return SuiteResult(records, tuple(factories), time.perf_counter() - begin)


@functools.lru_cache(maxsize=4)
def _reference(cases, seeds, steps):
  _, arrays = _prepared(cases, seeds, steps)
  return _run(_sgd, SGD_LEARNING_RATES, arrays)


def _sgd(learning_rate):
  return gtx.sgd(learning_rate)


def _score(name, cases, finals, bad, medians, initial, sgd_value, has_reference, sgd_rates,
           rates):
  records = []
  for j, case in enumerate(cases):
    record = dict(optimizer=name, case=case.name, group=case.group, dim=case.dim,
                  value=float(medians[j]), initial_value=float(initial[j]),
                  sgd_value=float(sgd_value[j]), sgd_learning_rate=float(sgd_rates[j]),
                  learning_rate=None if rates is None else float(rates[j]),
                  diverged_seeds=int(bad[j].sum()))
    if has_reference[j]:
      normalised, record["category"] = categorise(
          finals[j], bad[j], medians[j], initial[j], sgd_value[j])
      record["normalised"] = float(normalised)
    else:
      record["normalised"], record["category"] = math.nan, "no reference"
    records.append(record)
  return records


def categorise(finals, bad, median, initial, reference):
  """``(normalised value, category)`` of one case from per-seed final values.

  ``finals`` and ``bad`` (diverged) are per seed, ``median`` the median of the valid
  seeds (inf if fewer than half are valid), ``initial`` the value at the start and
  ``reference`` tuned SGD's median. The rules of the authors' ``qualitativeAssess``.
  """
  if not median <= DIVERGED_ABOVE:
    return math.inf, "diverged"
  median, reference = max(median, -DIVERGED_ABOVE), max(reference, -DIVERGED_ABOVE)
  normalised = (median - initial) / (reference - initial)
  if math.isnan(normalised):
    return normalised, "diverged"
  if normalised <= NO_PROGRESS_AT_MOST:
    return normalised, "no progress"
  if np.any(bad):
    return normalised, "unreliable"
  per_seed = (np.maximum(finals, -DIVERGED_ABOVE) - initial) / (reference - initial)
  if np.sum(per_seed < NO_PROGRESS_AT_MOST) > 0.25 * len(finals):
    return normalised, "unreliable"
  if normalised > BETTER_ABOVE:
    return normalised, "better than twice SGD"
  return normalised, "comparable to SGD"

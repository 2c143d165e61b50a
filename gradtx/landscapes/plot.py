"""Pictures: optimizer trajectories on 2-D landscapes, and the unit-test summary grid.

matplotlib is an optional dependency (``pip install "gradtx[examples]"``); it is
imported when a picture is drawn, never when gradtx is imported.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx
from gradtx.landscapes import functions, scoring


def _pyplot():
  try:
    import matplotlib.pyplot as plt
  except ImportError as error:
    raise ImportError("gradtx.landscapes plots need matplotlib: pip install matplotlib "
                      "(or pip install \"gradtx[examples]\")") from error
  return plt


def trajectory(function: functions.Landscape, tx: gtx.GradientTransformation, *,
               steps: int = 100, start=None) -> np.ndarray:
  """The points ``(steps + 1, dim)`` that ``tx`` visits from ``start`` (default: the
  function's start point), given ``value=`` and the exact gradient at each step."""
  x0 = jnp.asarray(function.start if start is None else start, jnp.float32)
  value_and_grad = jax.value_and_grad(function.fn)

  @jax.jit
  def run(x0):
    def step(carry, _):
      x, state = carry
      value, grad = value_and_grad(x)
      updates, state = tx.update(grad, state, x, value=value, value_fn=function.fn)
      x = gtx.apply_updates(x, updates)
      return (x, state), x
    _, xs = jax.lax.scan(step, (x0, tx.init(x0)), None, length=steps)
    return jnp.concatenate([x0[None], xs])

  return np.asarray(run(x0))


def plot_trajectories(function: functions.Landscape, optimizers: Mapping[str, Any], *,
                      steps: int = 100, start=None, path=None, ax=None, resolution: int = 200,
                      title: str | None = None):
  """Contour lines of a 2-D ``function`` with each optimizer's path from its start point.

  Args:
    function: a 2-D :class:`~gradtx.landscapes.Landscape` (``rosenbrock``, ...).
    optimizers: ``{name: transform}``.
    steps: steps per optimizer.
    start: the start point (default: ``function.start``).
    path: if given, the figure is saved there (PNG by its suffix).
    ax: draw into this matplotlib axes instead of a new figure.
    resolution: grid points per axis for the contours.
    title: the axes' title (default: the function's name and the step count).

  Returns:
    The matplotlib figure.
  """
  if function.dim != 2:
    raise ValueError(f"plot_trajectories: needs a 2-D function, {function.name} has "
                     f"{function.dim} dimensions")
  plt = _pyplot()
  paths = {name: trajectory(function, tx, steps=steps, start=start)
           for name, tx in optimizers.items()}
  if ax is None:
    fig, ax = plt.subplots(figsize=(7, 6))
  else:
    fig = ax.figure
  (x_lo, x_hi), (y_lo, y_hi) = function.domain
  xs, ys = np.linspace(x_lo, x_hi, resolution), np.linspace(y_lo, y_hi, resolution)
  grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
  z = np.asarray(jax.jit(jax.vmap(function.fn))(jnp.asarray(grid, jnp.float32)))
  z = z.reshape(resolution, resolution)
  if np.isfinite(function.minimum):
    # Log-spaced levels above the minimum show the valley floor and the walls alike.
    floor = z - function.minimum
    levels = np.geomspace(max(np.percentile(floor, 0.5), 1e-3), floor.max(), 25)
    ax.contour(xs, ys, floor, levels=levels, cmap="viridis", linewidths=0.7,
               norm=_log_norm())
  else:
    ax.contour(xs, ys, z, levels=25, cmap="viridis", linewidths=0.7)
  for point in function.minima:
    ax.plot(*point, marker="*", markersize=14, color="gold", markeredgecolor="black",
            linestyle="none", zorder=5)
  for name, points in paths.items():
    finite = points[np.all(np.isfinite(points), 1)]
    ax.plot(finite[:, 0], finite[:, 1], marker="o", markersize=2.5, linewidth=1.2,
            label=name)
  x0 = function.start if start is None else start
  ax.plot(*x0, marker="s", color="black", linestyle="none", label="start")
  ax.set_xlim(x_lo, x_hi)
  ax.set_ylim(y_lo, y_hi)
  ax.set_title(title or f"{function.name}, {steps} steps")
  ax.legend(loc="best", fontsize=8)
  if path is not None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
  return fig


def _log_norm():
  from matplotlib.colors import LogNorm
  return LogNorm()


def plot_suite(result: scoring.SuiteResult, *, path=None, ax=None):
  """The paper's summary picture: one row per optimizer, one column per case (grouped),
  each cell coloured by its category (grey: no SGD reference).

  Returns:
    The matplotlib figure; saved to ``path`` if given.
  """
  plt = _pyplot()
  from matplotlib.colors import to_rgb
  from matplotlib.patches import Patch
  groups = result.groups()
  by_key = {(r["optimizer"], r["case"]): r for r in result.records}
  cases = []
  for g in groups:
    cases += [r["case"] for r in result.records
              if r["optimizer"] == result.optimizers[0] and r["group"] == g]
  image = np.array([[to_rgb(scoring.COLOURS[by_key[(name, c)]["category"]]) for c in cases]
                    for name in result.optimizers])
  if ax is None:
    fig, ax = plt.subplots(figsize=(14, 1.2 + 0.45 * len(result.optimizers)))
  else:
    fig = ax.figure
  ax.imshow(image, aspect="auto", interpolation="nearest")
  ax.set_yticks(range(len(result.optimizers)), result.optimizers)
  edges = np.cumsum([0] + [sum(1 for r in result.records if r["optimizer"] ==
                               result.optimizers[0] and r["group"] == g) for g in groups])
  for e in edges[1:-1]:
    ax.axvline(e - 0.5, color="white", linewidth=1.5)
  ax.set_xticks((edges[:-1] + edges[1:]) / 2 - 0.5, groups, rotation=35, ha="right",
                fontsize=8)
  ax.legend(handles=[Patch(color=scoring.COLOURS[c], label=c) for c in scoring.COLOURS],
            loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1,
            fontsize=8, frameon=False)
  ax.set_title("Schaul et al. 2014 unit tests: category per case")
  if path is not None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
  return fig

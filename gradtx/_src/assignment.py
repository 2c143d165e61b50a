"""The linear assignment problem, by the Hungarian algorithm (Optax's
``optax.assignment``).

Given an ``n x m`` cost matrix ``C``, find ``min(n, m)`` pairs ``(i, j)``, each row and
each column used at most once, minimising ``sum C[i, j]``. Both solvers are
jit-compatible (shapes are static; the searches are ``lax.while_loop``s), return
``(rows, cols)`` index arrays with the cost ``C[rows, cols].sum()``, and order their
pairs as Optax 0.2.8's do; ties are broken the same way, so equal-cost optima come out
the same too.

* :func:`hungarian_algorithm`: the Jonker-Volgenant style shortest-augmenting-path
  method with row and column potentials, one row added per outer step, as written in
  the Scenic library (Dehghani et al. 2022).
* :func:`base_hungarian_algorithm`: Crouse's (2016) rectangular variant, "On
  implementing 2D rectangular assignment algorithms", pages 1685-1686, also what
  ``scipy.optimize.linear_sum_assignment`` implements.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def _empty() -> tuple[jax.Array, jax.Array]:
  return jnp.zeros(0, int), jnp.zeros(0, int)


# --- Crouse (2016) ------------------------------------------------------------------------


def _pick_column(shortest: jax.Array, remaining: jax.Array, num_remaining: jax.Array,
                 row4col: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The position in ``remaining`` of the next column to scan, and its distance: the
  column of lowest distance, preferring a free one (which ends the path) among equals.

  Crouse's scan over ``remaining[0:num_remaining]`` keeps the first strict minimum and
  then moves to any later free column of equal distance; the result is the last free
  column at the minimum if there is one, else the first column at the minimum.
  """
  positions = jnp.arange(remaining.shape[0])
  in_range = positions < num_remaining
  distances = shortest[remaining]
  lowest = jnp.min(distances, initial=jnp.inf, where=in_range)
  at_lowest = in_range & (distances == lowest)
  free_at_lowest = at_lowest & (row4col[remaining] == -1)
  last_free = positions.shape[0] - 1 - jnp.argmax(free_at_lowest[::-1])
  return jnp.where(jnp.any(free_at_lowest), last_free, jnp.argmax(at_lowest)), lowest


def _shortest_augmenting_path(costs, u, v, path, row4col, start_row):
  """Dijkstra over reduced costs from the free row ``start_row`` to a free column (the
  sink): returns the sink, the path's length, the rows and columns scanned (SR, SC),
  the tentative distances to every column and the predecessor rows (``path``)."""
  n, m = costs.shape
  shortest = jnp.full(m, jnp.inf, costs.dtype)
  state = dict(i=jnp.asarray(start_row), min_value=jnp.zeros([], costs.dtype),
               remaining=jnp.arange(m)[::-1], num_remaining=jnp.asarray(m),
               scanned_rows=jnp.zeros(n, bool), scanned_cols=jnp.zeros(m, bool),
               shortest=shortest, path=path, sink=jnp.asarray(-1))

  def step(s):
    i = s["i"]
    scanned_rows = s["scanned_rows"].at[i].set(True)
    unscanned = ~s["scanned_cols"]
    reduced = s["min_value"] + costs[i] - u[i] - v
    improves = unscanned & (reduced < s["shortest"])
    path = jnp.where(improves, i, s["path"])
    shortest = jnp.where(improves, reduced, s["shortest"])
    index, lowest = _pick_column(shortest, s["remaining"], s["num_remaining"], row4col)
    j = s["remaining"][index]
    free = row4col[j] == -1
    num_remaining = s["num_remaining"] - 1
    return dict(i=jnp.where(free, i, row4col[j]), min_value=lowest,
                remaining=s["remaining"].at[index].set(s["remaining"][num_remaining]),
                num_remaining=num_remaining, scanned_rows=scanned_rows,
                scanned_cols=s["scanned_cols"].at[j].set(True), shortest=shortest,
                path=path, sink=jnp.where(free, j, -1))

  s = jax.lax.while_loop(lambda s: s["sink"] == -1, step, state)
  return s["sink"], s["min_value"], s["scanned_rows"], s["scanned_cols"], s["shortest"], (
      s["path"])


def _add_row(current_row, carry):
  """Assigns ``current_row`` along a shortest augmenting path, updating the dual
  variables ``u`` (rows) and ``v`` (columns) so that reduced costs stay non-negative."""
  costs, u, v, path, row4col, col4row = carry
  sink, min_value, scanned_rows, scanned_cols, shortest, path = _shortest_augmenting_path(
      costs, u, v, path, row4col, current_row)
  u = u.at[current_row].add(min_value)
  others = scanned_rows & (jnp.arange(costs.shape[0]) != current_row)
  u = jnp.where(others, u + min_value - shortest[col4row], u)
  v = jnp.where(scanned_cols, v + shortest - min_value, v)

  def flip(c):  # one edge of the alternating path, walked back from the sink
    j, row4col, col4row, _ = c
    i = path[j]
    return col4row[i], row4col.at[j].set(i), col4row.at[i].set(j), i == current_row

  _, row4col, col4row, _ = jax.lax.while_loop(lambda c: ~c[-1], flip,
                                              (sink, row4col, col4row, False))
  return costs, u, v, path, row4col, col4row


def base_hungarian_algorithm(cost_matrix: Any) -> tuple[jax.Array, jax.Array]:
  r"""The Hungarian algorithm for the linear assignment problem, after Crouse (2016).

  Solves ``min sum_ij C_ij X_ij`` over ``X in {0, 1}^{n x m}`` with at most one 1 per
  row and per column and ``min(n, m)`` ones in all. The shorter side is taken as the
  rows (the matrix is transposed if needed); each row in turn is assigned along a
  shortest augmenting path found by Dijkstra's method on the reduced costs
  ``C_ij - u_i - v_j``, after which the dual variables ``u, v`` are updated. The costs
  are computed in the default float dtype.

  Returns:
    ``(i, j)``: row and column indices, ``i`` increasing; the assignment's cost is
    ``cost_matrix[i, j].sum()``.

  Reference: D. F. Crouse, "On implementing 2D rectangular assignment algorithms", IEEE
  Transactions on Aerospace and Electronic Systems 52(4), 2016.
  """
  if cost_matrix.shape[0] == 0 or cost_matrix.shape[1] == 0:
    return _empty()
  transpose = cost_matrix.shape[1] < cost_matrix.shape[0]
  costs = (cost_matrix.T if transpose else cost_matrix).astype(float)
  n, m = costs.shape
  carry = (costs, jnp.zeros(n, costs.dtype), jnp.zeros(m, costs.dtype), jnp.full(m, -1),
           jnp.full(m, -1), jnp.full(n, -1))
  col4row = jax.lax.fori_loop(0, n, _add_row, carry)[-1]
  if transpose:
    order = col4row.argsort()
    return col4row[order], order
  return jnp.arange(n), col4row


# --- Scenic's version ---------------------------------------------------------------------


def _assign_row(costs: jax.Array, carry, row):
  """Adds row ``row`` (0-based) to the matching, with 1-based bookkeeping: column 0 is
  a virtual column holding the new row, ``parent[j]`` is the row (1-based, 0: none)
  matched to column ``j``, ``u`` has an extra last entry that absorbs the updates of
  unused columns."""
  u, v, parent = carry
  rows, cols = costs.shape
  parent = parent.at[0].set(row + 1)

  def grow(s):  # Dijkstra step: scan the last reached column's row, reach one more column
    u, v, used, minv, path, col = s
    used = used.at[col].set(True)
    unused = ~used[1:]
    i = parent[col]
    reduced = jnp.where(unused, costs[i - 1, :] - u[i] - v[1:], jnp.inf)
    better = reduced < minv
    path = jnp.where(better, col, path)
    minv = jnp.where(better, reduced, minv)
    col = jnp.argmin(jnp.where(unused, minv, jnp.inf)) + 1
    delta = minv.min(where=unused, initial=jnp.inf)
    u = u.at[jnp.where(used, parent, rows + 1)].add(delta)
    v = jnp.where(used, v - delta, v)
    minv = jnp.where(unused, minv - delta, minv)
    return u, v, used, minv, path, col

  start = (u, v, jnp.zeros(cols + 1, bool), jnp.full(cols, jnp.inf), jnp.zeros(cols, int),
           0)
  u, v, _, _, path, col = jax.lax.while_loop(lambda s: parent[s[-1]] != 0, grow, start)

  def unwind(s):  # shift the matches one edge back along the path
    parent, col = s
    previous = path[col - 1]
    return parent.at[col].set(parent[previous]), previous

  parent, _ = jax.lax.while_loop(lambda s: s[1] != 0, unwind, (parent, col))
  return (u, v, parent), None


def hungarian_algorithm(cost_matrix: Any) -> tuple[jax.Array, jax.Array]:
  r"""The Hungarian algorithm for the linear assignment problem, as in Scenic.

  Solves the same problem as :func:`base_hungarian_algorithm` (``min(n, m)`` pairs, at
  most one per row and per column, of least total cost): rows (the shorter side) are
  added one at a time, each along a shortest augmenting path grown with row potentials
  ``u`` and column potentials ``v`` (the ``O(n^2 m)`` method of Jonker & Volgenant
  1987 as popularised by e-maxx); it traces to a simpler program than
  :func:`base_hungarian_algorithm`.

  Returns:
    ``(i, j)``: row and column indices with cost ``cost_matrix[i, j].sum()``, in
    Optax's order: for a square matrix ``j = arange(n)``; for a wide one the assigned
    columns by decreasing row; for a tall one ``i`` by decreasing column.

  Reference: Dehghani et al., "Scenic: A JAX Library for Computer Vision Research and
  Beyond", CVPR 2022 (arXiv:2110.11403).
  """
  if cost_matrix.shape[0] == 0 or cost_matrix.shape[1] == 0:
    return _empty()
  transpose = cost_matrix.shape[0] > cost_matrix.shape[1]
  costs = cost_matrix.T if transpose else cost_matrix
  rows, cols = costs.shape
  carry = (jnp.zeros(rows + 2), jnp.zeros(cols + 1), jnp.zeros(cols + 1, int))
  (_, _, parent), _ = jax.lax.scan(lambda c, r: _assign_row(costs, c, r), carry,
                                   jnp.arange(rows))
  if rows == cols:
    row_of, columns = parent[1:], jnp.arange(rows)
  else:  # the `rows` matched columns, by decreasing row
    row_of, columns = jax.lax.top_k(parent[1:], rows)
  row_of = row_of - 1
  return (columns, row_of) if transpose else (row_of, columns)

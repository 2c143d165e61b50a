"""Schaul et al.'s cases as arrays: groups of cases stacked for one vmapped run, their
noise draws, and the noisy objective and its expectation (see
:mod:`gradtx.landscapes.schaul` for the cases themselves)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.landscapes import prototypes
from gradtx.landscapes.schaul import (CURL_SCALE, KINDS, NOISES, NONSTATIONARITY, PERIOD,
                                      SCALES, Case)


def orthonormal(uid: int, dim: int) -> np.ndarray:
  """A random orthonormal matrix (Haar-distributed) fixed by ``uid``."""
  a = np.random.default_rng(uid).normal(size=(dim, dim))
  q, r = np.linalg.qr(a)
  return q * np.sign(np.diag(r))


@dataclasses.dataclass
class Group:
  """Cases as stacked arrays (leading axes: case, seed), all of :attr:`dim` coordinates:
  a case with fewer has extra coordinates whose function is 0 everywhere (so they add
  nothing to the L1 norm, get a zero gradient and stay at their start, 0)."""

  cases: tuple[Case, ...]
  arrays: dict[str, np.ndarray]
  seeds: int
  steps: int

  @property
  def dim(self) -> int:
    return self.arrays["x0"].shape[-1]

  def problem_arrays(self) -> dict[str, jax.Array]:
    """Arrays with leading axes ``(case, seed)`` (seed axis broadcast where shared)."""
    c, s = len(self.cases), self.seeds
    return {k: jnp.asarray(np.broadcast_to(v, (c, s) + v.shape[2:]))
            for k, v in self.arrays.items()}


def build_group(cases: Sequence[Case], seeds: Sequence[int], steps: int) -> Group:
  """Stacks cases into arrays for :func:`objective`, padded to the largest dimension.

  Per case and seed: the chain segments and their bounds for each period of 10 steps
  (rebuilt under scale drift), the noise draws of every step, the noise sigmas and the
  offset of each period; per case the rotation and curl matrices.
  """
  cases = tuple(cases)
  dim = max(k.dim for k in cases)
  c, s = len(cases), len(seeds)
  pad = lambda row, value: list(row) + [value] * (dim - len(row))  # noqa: E731
  periods = max(1, -(-steps // PERIOD))
  drifting = any(k.nonstationarity != "none" for k in cases)
  t = periods if drifting else 1
  kinds = np.array([pad([KINDS.index(NOISES[n][0]) for n in k.noise], 0) for k in cases])
  sigma = np.array([pad([NOISES[n][1] for n in k.noise], 0.0) for k in cases])
  noise, z_scale, z_noise, z_offset = _draws(
      np.array([k.uid for k in cases], np.uint64), np.asarray(seeds, np.uint64), kinds, sigma,
      steps=steps, periods=t, dim=dim)

  # Scale drift: fresh slopes each period (period 0 is the case as defined).
  is_scale = np.array([k.nonstationarity == "scale" for k in cases])[:, None, None, None]
  factor = np.where(is_scale, np.exp(NONSTATIONARITY["scale"] * z_scale), 1.0)
  if not drifting:
    factor = factor[:, :1]
  segments, bounds = _segments(cases, factor)

  is_noise = np.array([k.nonstationarity == "noise" for k in cases])[:, None, None, None]
  noise_factor = np.where(is_noise, np.exp(NONSTATIONARITY["noise"] * z_noise), 1.0)
  add = np.isin(kinds, (1, 3))[:, None, None, :] * sigma[:, None, None, :] * noise_factor
  mul = (kinds == 2)[:, None, None, :] * sigma[:, None, None, :] * noise_factor
  mul = np.where((kinds == 4)[:, None, None, :], 1.0, mul)
  is_offset = np.array([k.nonstationarity == "offset" for k in cases])[:, None, None, None]
  offset = np.where(is_offset, np.cumsum(NONSTATIONARITY["offset"] * z_offset, 2), 0.0)
  if not drifting:
    add, mul, offset = add[:, :1], mul[:, :1], offset[:, :1]

  rotation = np.tile(np.eye(dim), (c, 1, 1))
  curl = np.zeros((c, dim, dim))
  for i, k in enumerate(cases):
    if k.rotated:
      rotation[i, :k.dim, :k.dim] = orthonormal(k.uid, k.dim)
    if k.curled:
      curl[i, :k.dim, :k.dim] = CURL_SCALE * orthonormal(k.uid, k.dim)
  rotation, curl = rotation[:, None], curl[:, None]
  x0 = np.array([pad([SCALES[n][0] for n in k.scale], 0.0) for k in cases])[:, None]
  f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
  arrays = dict(segments=f32(segments), bounds=f32(bounds), noise=f32(noise), add=f32(add),
                mul=f32(mul), offset=f32(offset), rotation=f32(rotation), curl=f32(curl),
                x0=f32(x0))
  return Group(cases, arrays, s, steps)


def _uniform(uids, seeds, stream, shape):
  """Uniform draws in (0, 1), ``(C, S) + shape``, from a counter-based hash (SplitMix64)
  of (case id, seed, stream, position): each case's and seed's numbers are fixed by
  those alone, whatever else is in the batch."""
  with np.errstate(over="ignore"):
    x = (uids.astype(np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
         ^ (seeds.astype(np.uint64)[None, :] + np.uint64(1)) * np.uint64(0xBF58476D1CE4E5B9)
         ^ np.uint64(stream) * np.uint64(0x94D049BB133111EB))
    x = x[(...,) + (None,) * len(shape)] + np.arange(np.prod(shape), dtype=np.uint64).reshape(shape)
    for _ in range(2):
      x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
      x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
      x = x ^ (x >> np.uint64(31))
  return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def _normal(uids, seeds, stream, shape):
  u1, u2 = _uniform(uids, seeds, 2 * stream, shape), _uniform(uids, seeds, 2 * stream + 1, shape)
  return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


def _draws(uids, seeds, kinds, sigma, *, steps, periods, dim):
  """Per case and seed: the noise variate of every step ``(C, S, steps, D)`` and the
  drift draws per period ``(C, S, periods, D)`` (zero in period 0)."""
  kinds = kinds[:, None, None, :]
  n = np.where(kinds == 3, np.tan(np.pi * (_uniform(uids, seeds, 10, (steps, dim)) - 0.5)),
               _normal(uids, seeds, 0, (steps, dim)))
  # Mask-out multiplies f and g by exp(n) with n = -inf where masked (the authors'
  # formulation); a large finite number keeps 0 * n = 0 where it is not used.
  masked = _uniform(uids, seeds, 11, (steps, dim)) < sigma[:, None, None, :]
  n = np.where(kinds == 4, np.where(masked, -1e30, 0.0), n)
  drift = [_normal(uids, seeds, stream, (periods, dim)) for stream in (2, 3, 4)]
  for z in drift:
    z[:, :, 0] = 0.0
  return (n, *drift)


def _segments(cases, factor):
  """Segments ``(C, S, T, D, K, 8)`` and bounds ``(C, S, T, D, K-1)``; chains shorter
  than the group's longest are padded with copies of their last segment that no point
  reaches (bound ``+inf``)."""
  c, s, t, d = factor.shape
  k = max(prototypes.num_segments(sh) for case in cases for sh in case.shapes)
  segments = np.zeros((c, s, t, d, k, prototypes.NUM_PARAMS))
  bounds = np.full((c, s, t, d, max(k - 1, 0)), np.inf)
  by_chain = {}
  for i, case in enumerate(cases):
    for j, (sh, sc) in enumerate(zip(case.shapes, case.scale)):
      by_chain.setdefault(sh, []).append((i, j, sc))
  for shapes, where in by_chain.items():
    ii, jj = np.array([w[0] for w in where]), np.array([w[1] for w in where])
    xs, xe, fs, fp = np.array([SCALES[w[2]] for w in where]).T
    fp = fp[:, None, None] * factor[ii, :, :, jj]
    shape = fp.shape
    seg, bnd = prototypes.build_chain(shapes, *(np.broadcast_to(a[:, None, None], shape).ravel()
                                                for a in (xs, xe, fs)), fp.ravel())
    n = seg.shape[1]
    seg = seg.reshape(shape + seg.shape[1:])
    segments[ii, :, :, jj, :n] = seg
    segments[ii, :, :, jj, n:] = seg[..., -1:, :]
    bounds[ii, :, :, jj, :n - 1] = bnd.reshape(shape + (n - 1,))
  return segments, bounds


def objective(problem: dict[str, jax.Array], x: jax.Array, step: jax.Array):
  """``(value, grad, expected_value)`` of one case and seed at ``x`` on ``step``.

  ``problem`` holds one case's arrays (a :class:`Group`'s, without the case and seed
  axes); ``step`` counts from 0 and picks the period and the noise draw.
  """
  periods = problem["segments"].shape[0]
  p = jnp.minimum(step // PERIOD, periods - 1)
  q = jnp.minimum(p, problem["add"].shape[0] - 1)
  y = x - problem["offset"][q]
  if x.shape[0] > 1:
    y = problem["rotation"] @ y
  f, g = prototypes.evaluate(problem["segments"][p], problem["bounds"][p], y)
  noise = problem["noise"][jnp.minimum(step, problem["noise"].shape[0] - 1)]
  spread = jnp.exp(problem["mul"][q] * noise)
  add = problem["add"][q] * noise
  f_noisy, g_noisy = (f + y * add) * spread, (g + add) * spread
  if x.shape[0] == 1:
    value, grad, expected = f_noisy[0], g_noisy, f[0]
  else:
    value, expected = jnp.sum(jnp.abs(f_noisy)), jnp.sum(jnp.abs(f))
    grad = problem["rotation"].T @ (jnp.sign(f_noisy) * g_noisy) + problem["curl"] @ x
  return value, grad, expected


def expected_value(problem: dict[str, jax.Array], x: jax.Array, step: jax.Array):
  """The noise-free value of one case at ``x`` with the function in force on ``step``."""
  quiet = dict(problem, add=jnp.zeros_like(problem["add"]),
               mul=jnp.zeros_like(problem["mul"]))
  return objective(quiet, x, step)[2]

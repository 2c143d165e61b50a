"""The 8-device checks of local SGD and DiLoCo; prints one ``REPORT {json}`` line.

Started by tests/test_local_sgd.py in ONE subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``. Every run here is a
``jax.jit(jax.shard_map(...))`` over a ``('data',)`` mesh of the 8 devices, with params
and state stacked on a leading replica axis (each device squeezes its slice):

* ``shard_map_vs_leading``: DiLoCo (inner AdamW, outer Nesterov SGD, H=4) under
  shard_map with ``axis_name='data'``, against the same run with ``axis_name=None`` on one
  device; the largest difference of params, global params and state after each step.
  Inner and outer optimizer are wrapped in counting transforms, whose counts in the
  state say how often each ran (the outer runs in the conditional's branch with the
  all-reduce, so its count is how often that branch executed).
* ``local_sgd_vs_data_parallel``: local SGD with H=1 and ``sgd(2**-3)`` under shard_map
  against synchronous data-parallel SGD (``lax.pmean`` of the gradients), also under
  shard_map: the largest difference after each step (0 expected: bit for bit).
* ``hlo``: all-reduce instructions in the compiled DiLoCo and data-parallel steps,
  split into those run on every step and those inside a ``conditional`` (the helper
  of examples/diloco_digits.py).
* ``example``: examples/diloco_digits.py with tiny settings.
"""

import json
import pathlib
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, PartitionSpec as P

import gradtx as gtx

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples"))

from conftest import make_params  # noqa: E402
import diloco_digits  # noqa: E402

R = 8
AXIS = "data"
MESH = jax.make_mesh((R,), (AXIS,), axis_types=(AxisType.Auto,))
SHIFTS = jnp.linspace(-1.0, 1.0, R)  # replica r's data: the loss shifted by SHIFTS[r]


def loss(params, shift):
  return sum(jnp.sum((i + 1) * (p + shift - 0.5 * i) ** 2 + 0.3 * jnp.sin(3.0 * (p + shift)))
             for i, p in enumerate(jax.tree.leaves(params)))


squeeze = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
expand = lambda tree: jax.tree.map(lambda a: a[None], tree)  # noqa: E731


def mapped(fn):
  return jax.jit(jax.shard_map(fn, mesh=MESH, in_specs=P(AXIS), out_specs=P(AXIS)))


def shard_map_run(tx, steps, sync_gradients=False):
  """``steps`` steps of ``tx`` under shard_map; the stacked params and state after each."""
  init = mapped(lambda p: expand(tx.init(squeeze(p))))

  def step(params, state, shift):
    params, state, shift = squeeze((params, state, shift))
    grads = jax.grad(loss)(params, shift)
    if sync_gradients:
      grads = jax.lax.pmean(grads, AXIS)
    updates, state = tx.update(grads, state, params)
    return expand((gtx.apply_updates(params, updates), state))

  params = jax.tree.map(lambda a: jnp.stack([a] * R), make_params())
  state = init(params)
  step = mapped(step).lower(params, state, SHIFTS).compile()
  path = []
  for _ in range(steps):
    params, state = step(params, state, SHIFTS)
    path.append((params, state))
  return path, step.as_text()


def leading_run(tx, steps):
  """The same with ``axis_name=None``: one program, replicas on the leading axis."""

  @jax.jit
  def step(params, state):
    grads = jax.vmap(jax.grad(loss))(params, SHIFTS)
    updates, state = tx.update(grads, state, params)
    return gtx.apply_updates(params, updates), state

  params = jax.tree.map(lambda a: jnp.stack([a] * R), make_params())
  state = tx.init(params)
  path = []
  for _ in range(steps):
    params, state = step(params, state)
    path.append((params, state))
  return path


def max_difference(a, b) -> float:
  return max([float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)] or [0.0])


class CountState(NamedTuple):
  count: jax.Array


def counting(tx):
  """``tx``, with a count of its own updates kept beside its state."""

  def init(params):
    return (tx.init(params), CountState(jnp.zeros([], jnp.int32)))

  def update(updates, state, params=None, **extra_args):
    updates, inner = tx.update(updates, state[0], params, **extra_args)
    return updates, (inner, CountState(state[1].count + 1))

  return gtx.GradientTransformation(init, update)


def diloco(axis_name):
  return gtx.diloco(counting(gtx.adamw(0.05, weight_decay=0.1)),
                    counting(gtx.sgd(0.7, momentum=0.9, nesterov=True)), 4, axis_name)


def shard_map_vs_leading(steps=10):
  sharded, hlo = shard_map_run(diloco(AXIS), steps)
  leading = leading_run(diloco(None), steps)
  rows = []
  for (p_s, s_s), (p_l, s_l) in zip(sharded, leading):
    # Per-device copies of the shared parts must be equal on every device, and equal
    # to the leading-axis run's single copy.
    shared_s = (s_s.count, s_s.global_params, s_s.outer_state)
    shared_l = jax.tree.map(lambda a: jnp.stack([a] * R), (s_l.count, s_l.global_params,
                                                           s_l.outer_state))
    rows.append({"params": max_difference(p_s, p_l),
                 "inner_state": max_difference(s_s.inner_state, s_l.inner_state),
                 "shared_state": max_difference(shared_s, shared_l)})
  moved = max_difference(sharded[-1][0], sharded[0][0])
  state = sharded[-1][1]
  return {"steps": rows, "params_moved": moved,
          "counts": [int(s.count[0]) for _, s in sharded],
          "inner_updates": np.asarray(state.inner_state[1].count).tolist(),
          "outer_updates_after_each_step": [np.asarray(s.outer_state[1].count).tolist()
                                            for _, s in sharded]}, hlo


def local_sgd_vs_data_parallel(steps=6):
  local, _ = shard_map_run(gtx.local_sgd(gtx.sgd(2.0**-3), 1, AXIS), steps)
  synchronous, hlo = shard_map_run(gtx.sgd(2.0**-3), steps, sync_gradients=True)
  return ({"differences": [max_difference(a[0], b[0]) for a, b in zip(local, synchronous)],
           "replicas_differ_in_data": max_difference(
               jax.vmap(jax.grad(loss))(local[0][0], SHIFTS),
               jax.vmap(jax.grad(loss), in_axes=(0, None))(local[0][0], 0.0))},
          hlo)


def main():
  report = {"devices": len(jax.devices())}
  report["shard_map_vs_leading"], diloco_hlo = shard_map_vs_leading()
  report["local_sgd_vs_data_parallel"], dp_hlo = local_sgd_vs_data_parallel()
  report["hlo"] = {"diloco": diloco_digits.count_all_reduces(diloco_hlo),
                   "data_parallel": diloco_digits.count_all_reduces(dp_hlo),
                   "diloco_text_all_reduces": diloco_hlo.count(" all-reduce(")
                   + diloco_hlo.count(" all-reduce-start(")}
  report["example"] = diloco_digits.main(["--steps", "40", "--sync-period", "20"])["runs"]
  print("REPORT " + json.dumps(report))


if __name__ == "__main__":
  main()

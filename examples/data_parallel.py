"""Data-parallel (and model-parallel) training with gradtx on a `jax.sharding.Mesh`.

Only JAX's own SPMD machinery is used: a `Mesh` of devices, a `NamedSharding` for every
array the step carries, and `jax.jit` with `in_shardings`/`out_shardings`; XLA inserts
the collectives (the all-reduce of the gradients over the data axis, and so on).
:func:`gradtx.state_shardings` gives the optimizer state's shardings from the params'.
Three layouts are trained and compared with a run on one device:

* ``replicated``: params and optimizer state on every device, the batch split over
  ``data`` (8 devices): classic data parallelism.
* ``sharded``: a 2x4 mesh ``('data', 'model')``; the hidden layer's weights split over
  ``model`` (Megatron-style: the first kernel by columns, the second by rows), the batch
  over ``data``; every per-param state leaf (Adam's moments, Lookahead's slow weights)
  lives where its param lives.
* ``zero1``: params replicated, the optimizer state split over ``data`` as well (ZeRO
  stage 1, Rajbhandari et al. 2020): each device keeps 1/8 of Adam's moments.

On a machine without 8 accelerators the script simulates 8 CPU devices (it sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX starts)::

    python examples/data_parallel.py
    python examples/data_parallel.py --layout sharded --steps 50
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402 - XLA_FLAGS must be set before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # noqa: E402

import gradtx as gtx  # noqa: E402

BATCH = 64
HIDDEN = 128
LAYOUTS = {"replicated": ((8,), ("data",)),
           "sharded": ((2, 4), ("data", "model")),
           "zero1": ((8,), ("data",))}


def load_data():
  try:
    from sklearn.datasets import load_digits
  except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit('data_parallel.py needs scikit-learn: pip install "gradtx[examples]"'
                     ) from error
  digits = load_digits()
  return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


def init_params(key: jax.Array) -> dict[str, jax.Array]:
  k1, k2 = jax.random.split(key)
  return {"w1": jax.random.normal(k1, (64, HIDDEN)) * jnp.sqrt(2.0 / 64),
          "b1": jnp.zeros(HIDDEN),
          "w2": jax.random.normal(k2, (HIDDEN, 10)) * jnp.sqrt(2.0 / HIDDEN),
          "b2": jnp.zeros(10)}


def loss_fn(params, x, y):
  hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
  logits = hidden @ params["w2"] + params["b2"]
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def make_optimizer(steps: int) -> gtx.GradientTransformation:
  schedule = gtx.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=max(1, steps // 10),
                                              decay_steps=steps)
  return gtx.chain(gtx.clip_by_global_norm(1.0),
                   gtx.lookahead(gtx.adamw(schedule, weight_decay=1e-4), sync_period=5))


def make_mesh(layout: str) -> jax.sharding.Mesh:
  shape, names = LAYOUTS[layout]
  return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names))


def param_specs(layout: str) -> dict[str, P]:
  if layout == "sharded":
    return {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None), "b2": P()}
  return {"w1": P(), "b1": P(), "w2": P(), "b2": P()}


def batches(x, y, steps: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  for _ in range(steps):
    index = rng.choice(len(x), BATCH, replace=False)
    yield x[index], y[index]


def shardings(layout: str, tx: gtx.GradientTransformation, params):
  """The shardings of params, optimizer state and batch for ``layout``."""
  mesh = make_mesh(layout)
  params_sharding = {k: NamedSharding(mesh, spec) for k, spec in param_specs(layout).items()}
  state_sharding = gtx.state_shardings(tx, params, params_sharding,
                                       shard_over="data" if layout == "zero1" else None)
  batch_sharding = NamedSharding(mesh, P("data"))
  return params_sharding, state_sharding, batch_sharding


def train(layout: str | None, steps: int, seed: int = 0):
  """Trains ``steps`` steps on one device (``layout=None``) or on the layout's mesh.

  Returns the params, the optimizer state and the losses.
  """
  x, y = load_data()
  params = init_params(jax.random.key(seed))
  tx = make_optimizer(steps)

  def step(params, opt_state, xb, yb):
    loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
    updates, opt_state = tx.update(grads, opt_state, params)
    return gtx.apply_updates(params, updates), opt_state, loss

  if layout is None:
    init, step = jax.jit(tx.init), jax.jit(step)
    put_batch = jnp.asarray
  else:
    params_sharding, state_sharding, batch_sharding = shardings(layout, tx, params)
    params = jax.device_put(params, params_sharding)
    init = jax.jit(tx.init, in_shardings=(params_sharding,), out_shardings=state_sharding)
    replicated = NamedSharding(batch_sharding.mesh, P())
    step = jax.jit(step,
                   in_shardings=(params_sharding, state_sharding, batch_sharding,
                                 batch_sharding),
                   out_shardings=(params_sharding, state_sharding, replicated),
                   donate_argnums=(0, 1))

    def put_batch(array):
      return jax.device_put(array, batch_sharding)

  opt_state = init(params)
  losses = []
  for xb, yb in batches(x, y, steps, seed):
    params, opt_state, loss = step(params, opt_state, put_batch(xb), put_batch(yb))
    losses.append(float(loss))
  return params, opt_state, losses


def describe(tree) -> str:
  return ", ".join(f"{jax.tree_util.keystr(path)}: {leaf.sharding.spec}"
                   for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
                   if isinstance(leaf.sharding, NamedSharding))


def main(argv: list[str] | None = None) -> dict[str, tuple]:
  """Trains on one device and on each chosen layout; returns ``{name: (params, opt_state,
  losses)}`` with the one-device run under ``"one_device"``."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--layout", choices=[*LAYOUTS, "all"], default="all",
                      help="The layout to train and compare with the one-device run "
                           "(default: %(default)s).")
  parser.add_argument("--steps", type=int, default=100,
                      help="The number of training steps of each run (default: %(default)s).")
  args = parser.parse_args(argv)
  if len(jax.devices()) < 8:
    raise SystemExit(f"needs 8 devices, found {len(jax.devices())}; run it in a fresh process "
                     "(XLA_FLAGS is read when JAX starts)")

  runs = {"one_device": train(None, args.steps)}
  reference, _, reference_losses = runs["one_device"]
  print(f"one device: loss {reference_losses[0]:.4f} -> {reference_losses[-1]:.4f}")
  for layout in (LAYOUTS if args.layout == "all" else [args.layout]):
    params, opt_state, losses = runs[layout] = train(layout, args.steps)
    difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                     zip(jax.tree.leaves(params), jax.tree.leaves(reference)))
    mu = opt_state[1].fast_state[0].mu  # chain -> lookahead -> adamw -> scale_by_adam
    print(f"{layout:>10}: loss {losses[0]:.4f} -> {losses[-1]:.4f}; max |params - one "
          f"device| = {difference:.1e}\n{'':12}params {describe(params)}\n"
          f"{'':12}Adam's mu {describe(mu)}; each device holds "
          f"{mu['w1'].addressable_shards[0].data.shape} of w1's {mu['w1'].shape}")
  return runs


if __name__ == "__main__":
  main()

"""Packed params on 8 simulated CPU devices: ZeRO-1 training and the packing check; prints JSON.

Started by tests/test_packing_sharding.py in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the rest of the suite keeps one
device). On a ``("data",)`` mesh of 8 devices it trains a small MLP packed in two
buffers (weights, 828 floats, and biases, 43) with ``multiple_of=8``, which pads them to
832 and 48: params replicated, the batch split over ``data``, the optimizer state split
over ``data`` by ``gtx.state_shardings(tx, packed, shard_over="data")``, passed as the step's
``in_shardings``/``out_shardings``. Each optimizer's run is compared with the same steps
on one device, computed here too, and the shardings the steps leave on params and state
are compared with the promised ones after every step, and the padding of the params
and of the packed state is read at the end. It also records what ``state_shardings``
gives a buffer that 8 does not divide (unpadded) and the same params padded, and the
errors of
``check_packable`` on params split over a ``("data", "model")`` mesh.
"""

import functools
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import gradtx as gtx
from gradtx._src.sharding import check_packable

STEPS = 10
LABELS = {"w1": "weights", "b1": "biases", "w2": "weights", "b2": "biases"}
OPTIMIZERS = {
    "adam": lambda: gtx.adam(1e-2),
    "clip+adamw": lambda: gtx.chain(gtx.clip_by_global_norm(0.5), gtx.adamw(1e-2)),
    "adafactor": lambda: gtx.adafactor(5e-2),  # per-leaf views: state on the plain tree
}


def init_params(key, hidden=36, classes=7):
  k1, k2 = jax.random.split(key)
  return {"w1": jax.random.normal(k1, (16, hidden)) / 4, "b1": jnp.zeros(hidden),
          "w2": jax.random.normal(k2, (hidden, classes)) / 6, "b2": jnp.zeros(classes)}


def make_batch(key, n=64):
  x = jax.random.normal(key, (n, 16))
  return x, jnp.argmax(x[:, :7], axis=1)  # one of the 7 classes


def loss_fn(packed, x, y):
  p = gtx.unpack(packed)
  logits = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def make_step(tx, **jit_kwargs):
  @functools.partial(jax.jit, **jit_kwargs)
  def step(packed, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(packed, x, y)
    updates, opt_state = tx.update(grads, opt_state, packed)
    return gtx.apply_updates(packed, updates), opt_state, loss
  return step


def batches():
  return [make_batch(jax.random.key(100 + i)) for i in range(STEPS)]


def max_difference(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def specs(tree):
  return {jax.tree_util.keystr(path): str(leaf.spec)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def as_promised(tree, shardings):
  return all(leaf.sharding.is_equivalent_to(s, leaf.ndim) for leaf, s in
             zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True))


def zero1(tx, packed, mesh):
  """The ZeRO-1 shardings and train step: params replicated, batch and state split."""
  replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  params_sharding = jax.tree.map(lambda _: replicated, packed)
  opt_sharding = gtx.state_shardings(tx, packed, params_sharding, shard_over="data")
  step = make_step(tx, in_shardings=(params_sharding, opt_sharding, split, split),
                   out_shardings=(params_sharding, opt_sharding, replicated))
  return params_sharding, opt_sharding, split, step


def largest_in_padding(tree):
  """The largest magnitude in the padding of every buffer of every Packed in ``tree``."""
  largest = 0.0
  for node in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, gtx.Packed)):
    if isinstance(node, gtx.Packed):
      for g, buffer in enumerate(node.buffers):
        pad = node.layout.padding(g)
        if pad:
          largest = max(largest, float(np.max(np.abs(np.asarray(buffer)[-pad:]))))
  return largest


def train(name, mesh, data):
  packed = gtx.pack(init_params(jax.random.key(0)), LABELS, multiple_of=8)
  tx = OPTIMIZERS[name]()

  one_step = make_step(tx)
  one_params, one_state = packed, tx.init(packed)
  one_losses = []
  for x, y in data:
    one_params, one_state, loss = one_step(one_params, one_state, x, y)
    one_losses.append(float(loss))

  params_sharding, opt_sharding, split, step = zero1(tx, packed, mesh)
  params = jax.device_put(packed, params_sharding)
  opt_state = jax.jit(tx.init, out_shardings=opt_sharding)(params)
  kept, params_kept, losses = [as_promised(opt_state, opt_sharding)], [], []
  for x, y in data:
    params, opt_state, loss = step(params, opt_state, jax.device_put(x, split),
                                   jax.device_put(y, split))
    kept.append(as_promised(opt_state, opt_sharding))
    params_kept.append(as_promised(params, params_sharding))
    losses.append(float(loss))

  return {
      "params_difference": max_difference(gtx.unpack(params), gtx.unpack(one_params)),
      "state_difference": max_difference(opt_state, one_state),
      "loss_difference": max_difference(losses, one_losses),
      "loss_first_last": [one_losses[0], one_losses[-1]],
      "state_kept_every_step": all(kept) and len(kept) == STEPS + 1,
      "params_kept_every_step": all(params_kept) and len(params_kept) == STEPS,
      "promised": specs(opt_sharding),
      "got": {k: str(v.sharding.spec) for k, v in
              zip(specs(opt_sharding), jax.tree.leaves(opt_state))},
      "buffer_lengths": [int(b.shape[0]) for b in packed.buffers],
      "buffer_shard_shapes": [list(leaf.addressable_shards[0].data.shape)
                              for leaf in jax.tree.leaves(opt_state)
                              if leaf.shape in ((48,), (832,))],  # the packed moments
      "padding_largest": largest_in_padding((params, opt_state)),
  }


def propagation_keeps_state(mesh, data):
  """Adam's ZeRO-1 step with the state's out_shardings left to XLA (None): whether the
  state it returns, step after step, keeps the shardings it came in with."""
  packed = gtx.pack(init_params(jax.random.key(0)), LABELS, multiple_of=8)
  tx = OPTIMIZERS["adam"]()
  params_sharding, opt_sharding, split, _ = zero1(tx, packed, mesh)
  step = make_step(tx, in_shardings=(params_sharding, opt_sharding, split, split),
                   out_shardings=(params_sharding, None, NamedSharding(mesh, P())))
  params = jax.device_put(packed, params_sharding)
  opt_state = jax.device_put(tx.init(packed), opt_sharding)
  kept = []
  for x, y in data[:3]:
    params, opt_state, _ = step(params, opt_state, jax.device_put(x, split),
                                jax.device_put(y, split))
    kept.append(as_promised(opt_state, opt_sharding))
  return all(kept)


def indivisible(mesh):
  """state_shardings on a buffer of 676 elements (8 does not divide it), and on the same
  params packed with multiple_of=8 (680 elements)."""
  out = {}
  for key, multiple_of in (("indivisible", None), ("padded", 8)):
    packed = gtx.pack(init_params(jax.random.key(0), hidden=32, classes=4),
                      multiple_of=multiple_of)
    shardings = jax.tree.map(lambda _: NamedSharding(mesh, P()), packed)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      promised = gtx.state_shardings(gtx.adam(1e-2), packed, shardings, shard_over="data")
    out[key] = {"length": int(packed.buffers[0].shape[0]), "promised": specs(promised),
                "warnings": [str(w.message) for w in caught]}
  return out


def packable_errors():
  """check_packable on params placed on a (4, 2) ("data", "model") mesh."""
  mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
  params = init_params(jax.random.key(0))
  specs_by_leaf = {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None),
                   "b2": P()}
  sharded = {k: jax.device_put(v, NamedSharding(mesh, specs_by_leaf[k]))
             for k, v in params.items()}
  fsdp = dict(params, w1=jax.device_put(params["w1"], NamedSharding(mesh, P("data", None))))
  abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding)
              for k, v in sharded.items()}
  replicated = jax.device_put(params, NamedSharding(mesh, P()))
  one_device = jax.device_put(params, NamedSharding(mesh, P(None)))

  explicit = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
  explicit_params = dict(params, w1=jax.device_put(params["w1"],
                                                   NamedSharding(explicit, P(None, "model"))))
  traced = {}

  @jax.jit
  def traced_check(tree):
    try:
      check_packable(tree)
      traced["error"] = None
    except ValueError as error:
      traced["error"] = str(error)
    return tree

  with jax.set_mesh(explicit):
    traced_check(explicit_params)

  def error_of(tree):
    try:
      check_packable(tree)
    except ValueError as error:
      return str(error)
    return None

  return {"model": error_of(sharded), "fsdp": error_of(fsdp),
          "abstract": error_of(abstract), "traced_explicit": traced["error"],
          "replicated": error_of(replicated), "one_device_spec": error_of(one_device),
          "packed": error_of(gtx.pack(params))}


def main():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  data = batches()
  report = {"devices": len(jax.devices()),
            "optimizers": {name: train(name, mesh, data) for name in OPTIMIZERS},
            "state_kept_without_out_shardings": propagation_keeps_state(mesh, data),
            **indivisible(mesh),
            "packable": packable_errors()}
  print("REPORT " + json.dumps(report))


if __name__ == "__main__":
  main()

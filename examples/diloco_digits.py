"""DiLoCo against synchronous data parallelism: 8 replicas train the digits MLP.

Eight replicas (simulated CPU devices on a machine without 8 accelerators: the script
sets ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX starts) each own
one eighth of scikit-learn's digits training set and train compare_optimizers.py's Flax
MLP for the same number of steps on the same batches, two ways:

* ``data parallel``: every step, the replicas' gradients are averaged (``lax.pmean``, one
  all-reduce) and every replica takes the same AdamW step (a global batch of 8 x batch).
* ``DiLoCo``: every replica takes its own AdamW steps on its own batches, and every
  ``H = 20`` steps the replicas' parameter deltas are averaged (one all-reduce) and an
  outer Nesterov SGD step moves the global params (:func:`gradtx.diloco`).

Each step is one ``jax.jit(jax.shard_map(...))`` over a ``('data',)`` mesh, params and
optimizer state stacked on a leading replica axis. The script prints the test accuracy
of each run and the all-reduces it executed, counted from the compiled step's HLO: the
all-reduce instructions run on every step, and those inside the ``conditional`` that
only runs on synchronisation steps (DiLoCo's, executed on steps H, 2H, ...)::

    python examples/diloco_digits.py
    python examples/diloco_digits.py --steps 400 --inner-lr 3e-3 --outer-lr 1.0 --seed 1

The default learning rates come from a small grid, scored by mean test accuracy over
seeds 0-2 for both runs alike (on the test set: there is no validation split here):
data-parallel AdamW 1e-3 (of 1e-3, 3e-3, 1e-2), DiLoCo's inner AdamW 1e-3 (of 1e-3,
3e-3) with the paper's outer 0.7 (outer 1.0 scored 0.2 points more on average, less
than one test image). Both runs take the same number of steps on the same batches.

Needs the ``examples`` extra: ``pip install "gradtx[examples]"`` (flax, scikit-learn).
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402 - XLA_FLAGS must be set before JAX starts
import pathlib  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, PartitionSpec as P  # noqa: E402

import gradtx as gtx  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare_optimizers import MLP, cross_entropy, load_data, nnx  # noqa: E402

REPLICAS = 8
AXIS = "data"


# --- counting all-reduces in compiled HLO --------------------------------------------------

_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) ")
_ALL_REDUCE = re.compile(r"= (.*?) all-reduce(?:-start)?\(")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}|true_computation=%([\w.\-]+), "
                       r"false_computation=%([\w.\-]+)")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)")
_ARRAY = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


def count_all_reduces(hlo: str) -> dict[str, list[int]]:
  """The all-reduce instructions of a compiled module, each as the number of values it
  reduces: ``always`` (reached from the entry without passing a conditional) and
  ``in_conditional`` (inside a branch of a ``conditional``, run only when taken)."""
  computations, current = {}, None
  entry = None
  for line in hlo.splitlines():
    match = _COMPUTATION.match(line)
    if match:
      current = match.group(1)
      computations[current] = {"reduces": [], "calls": [], "branches": []}
      entry = current if line.startswith("ENTRY") else entry
      continue
    if current is None:
      continue
    reduce = _ALL_REDUCE.search(line)
    if reduce:
      computations[current]["reduces"].append(sum(
          int(np.prod([int(d) for d in dims.split(",") if d]))
          for dims in _ARRAY.findall(reduce.group(1))))
    for branch in _BRANCHES.finditer(line):
      names = branch.group(1) or f"%{branch.group(2)}, %{branch.group(3)}"
      computations[current]["branches"] += [n.strip().lstrip("%") for n in names.split(",")]
    computations[current]["calls"] += _CALLS.findall(line)

  counts = {"always": [], "in_conditional": []}

  def visit(name, where):
    node = computations[name]
    counts[where] += node["reduces"]
    for callee in node["calls"]:
      visit(callee, where)
    for branch in node["branches"]:
      visit(branch, "in_conditional")

  visit(entry, "always")
  return counts


# --- the two runs --------------------------------------------------------------------------


def replica_batches(x_train, y_train, steps, batch_size, seed):
  """Each replica's own eighth of the training set, and the batch indices (into it) of
  every step: ``(shards_x, shards_y, indices)`` of shapes (R, n, 64), (R, n), (steps, R,
  batch_size); each replica walks through its shard in a fresh order every epoch."""
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(x_train))
  n = len(x_train) // REPLICAS
  shards = order[:n * REPLICAS].reshape(REPLICAS, n)
  per_epoch = n // batch_size
  epochs = -(-steps // per_epoch)
  indices = np.stack([np.concatenate([rng.permutation(n)[:per_epoch * batch_size]
                                      for _ in range(epochs)]) for _ in range(REPLICAS)])
  indices = indices[:, :steps * batch_size].reshape(REPLICAS, steps, batch_size)
  return x_train[shards], y_train[shards], indices.transpose(1, 0, 2)


def make_step(tx, graphdef, mesh, sync_gradients: bool):
  """One jitted shard_map step over stacked (replica-leading) params and state."""

  def loss_fn(params, x, y):
    return cross_entropy(nnx.merge(graphdef, params)(x), y)

  def step(params, opt_state, x, y):
    params, opt_state, x, y = jax.tree.map(lambda a: a[0], (params, opt_state, x, y))
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    if sync_gradients:
      grads = jax.lax.pmean(grads, AXIS)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = gtx.apply_updates(params, updates)
    return jax.tree.map(lambda a: a[None], (params, opt_state, loss))

  mapped = jax.shard_map(step, mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS))
  return jax.jit(mapped, donate_argnums=(0, 1))


def train(name: str, tx, data, args, sync_gradients: bool, sync_period: int | None) -> dict:
  x_train, x_test, y_train, y_test = data
  shards_x, shards_y, indices = replica_batches(x_train, y_train, args.steps,
                                                args.batch_size, args.seed)
  mesh = jax.make_mesh((REPLICAS,), (AXIS,), axis_types=(AxisType.Auto,))
  graphdef, params = nnx.split(MLP(nnx.Rngs(args.seed)), nnx.Param)
  # Every replica starts from the same params.
  params = jax.tree.map(lambda p: jnp.broadcast_to(p, (REPLICAS, *p.shape)), params)
  init = jax.jit(jax.shard_map(lambda p: jax.tree.map(lambda a: a[None], tx.init(
      jax.tree.map(lambda a: a[0], p))), mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS)))
  opt_state = init(params)
  step = make_step(tx, graphdef, mesh, sync_gradients)
  rows = np.arange(REPLICAS)[:, None]
  batch = lambda t: (shards_x[rows, indices[t]], shards_y[rows, indices[t]])  # noqa: E731
  step = step.lower(params, opt_state, *batch(0)).compile()
  counts = count_all_reduces(step.as_text())
  losses = []
  for t in range(args.steps):
    params, opt_state, loss = step(params, opt_state, *batch(t))
    losses.append(float(jnp.mean(loss)))
  # DiLoCo synchronises on steps H, 2H, ...: the conditional's all-reduces ran that often.
  syncs = args.steps // sync_period if sync_period else 0
  if sync_period and args.steps % sync_period:
    print(f"{name}: {args.steps} steps is not a multiple of H = {sync_period}; the "
          "replicas are evaluated at the last synchronisation", file=sys.stderr)
  final = opt_state.global_params if sync_period else params
  final = jax.tree.map(lambda a: a[0], final)
  logits = nnx.merge(graphdef, final)(jnp.asarray(x_test))
  executed = {"always": len(counts["always"]) * args.steps,
              "in_conditional": len(counts["in_conditional"]) * syncs}
  values = sum(counts["always"]) * args.steps + sum(counts["in_conditional"]) * syncs
  return {
      "name": name,
      "test_accuracy": float(jnp.mean(jnp.argmax(logits, axis=1) == y_test)),
      "final_train_loss": float(np.mean(losses[-20:])),
      "all_reduce_instructions": counts,
      "all_reduces": executed["always"] + executed["in_conditional"],
      "values_all_reduced": values,
      "syncs": syncs,
  }


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=600,
                      help="Steps of each run (DiLoCo: inner steps) (default: %(default)s).")
  parser.add_argument("--batch-size", type=int, default=16,
                      help="Examples per replica per step (default: %(default)s).")
  parser.add_argument("--sync-period", type=int, default=20,
                      help="DiLoCo's H, inner steps per synchronisation (default: "
                           "%(default)s).")
  parser.add_argument("--dp-lr", type=float, default=1e-3,
                      help="Data-parallel AdamW's learning rate (default: %(default)s).")
  parser.add_argument("--inner-lr", type=float, default=1e-3,
                      help="DiLoCo's inner AdamW learning rate (default: %(default)s).")
  parser.add_argument("--outer-lr", type=float, default=0.7,
                      help="DiLoCo's outer Nesterov SGD learning rate (default: "
                           "%(default)s, the paper's).")
  parser.add_argument("--weight-decay", type=float, default=1e-4,
                      help="AdamW's weight decay, both runs (default: %(default)s).")
  parser.add_argument("--seed", type=int, default=0,
                      help="Seeds the split, the shards, the batches and the initial "
                           "weights (default: %(default)s).")
  args = parser.parse_args(argv)
  if min(args.steps, args.batch_size, args.sync_period) < 1:
    parser.error("--steps, --batch-size and --sync-period must be positive")
  return args


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  if len(jax.devices()) < REPLICAS:
    raise SystemExit(f"diloco_digits.py needs {REPLICAS} devices, found "
                     f"{len(jax.devices())}: run it as a script (it asks XLA for 8 CPU "
                     "devices before JAX starts)")
  data = load_data(args.seed)
  print(f"digits: {len(data[0])} train / {len(data[1])} test images, {REPLICAS} replicas "
        f"with {len(data[0]) // REPLICAS} each; {args.steps} steps of batch "
        f"{args.batch_size} per replica")
  runs = [
      train("data parallel", gtx.adamw(args.dp_lr, weight_decay=args.weight_decay), data,
            args, sync_gradients=True, sync_period=None),
      train("DiLoCo", gtx.diloco(
          gtx.adamw(args.inner_lr, weight_decay=args.weight_decay),
          gtx.sgd(args.outer_lr, momentum=0.9, nesterov=True), args.sync_period, AXIS),
            data, args, sync_gradients=False, sync_period=args.sync_period),
  ]
  recipes = {"data parallel": f"AdamW lr {args.dp_lr:g}, gradients averaged every step",
             "DiLoCo": f"inner AdamW lr {args.inner_lr:g}, outer Nesterov SGD lr "
                       f"{args.outer_lr:g} momentum 0.9, H = {args.sync_period}"}
  print(f"{'run':<14} {'test accuracy':>13} {'all-reduces':>11} {'values reduced':>15}  recipe")
  for run in runs:
    print(f"{run['name']:<14} {run['test_accuracy']:>13.4f} {run['all_reduces']:>11,d} "
          f"{run['values_all_reduced']:>15,d}  {recipes[run['name']]}")
  dp, dl = runs
  print(f"DiLoCo - data parallel: {100 * (dl['test_accuracy'] - dp['test_accuracy']):+.2f} "
        f"points of test accuracy with {dl['all_reduces'] / dp['all_reduces']:.3f} of the "
        "all-reduces")
  return {"settings": vars(args), "runs": runs}


if __name__ == "__main__":
  main()

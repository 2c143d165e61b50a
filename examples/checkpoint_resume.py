"""Saves a Flax model and its gradtx optimizer state with Orbax, and resumes bit for bit.

The optimizer is deliberately stateful in every way a checkpoint can get wrong: a
learning-rate schedule read from an injected step count, Lookahead's slow weights and its
position in the sync cycle, and ``apply_if_finite``'s counters of skipped steps (one step's
gradients are poisoned with NaN just before the checkpoint, so those counters are not
zero when saved). Everything lives in the optimizer state, a pytree of arrays, so Orbax
saves it like the params; restoring it against an abstract target (shapes, dtypes and
shardings of a freshly built state) gives back JAX arrays of the right dtypes, not NumPy
ones. The demo

1. trains ``--steps`` steps without interruption,
2. trains again from scratch, saving a checkpoint after ``--save-at`` steps,
3. starts a new Python process that restores the checkpoint and trains to ``--steps``,

and checks that the params and the optimizer state of 3 equal those of 1, bit for bit::

    python examples/checkpoint_resume.py
    python examples/checkpoint_resume.py --steps 60 --save-at 25 --dir /tmp/ckpt

Needs ``orbax-checkpoint``, ``flax`` and ``scikit-learn``.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx

try:
  import orbax.checkpoint as ocp
  from flax import nnx
  from sklearn.datasets import load_digits
except ImportError as error:  # pragma: no cover - depends on the environment
  raise SystemExit(f"checkpoint_resume.py needs {error.name}, which is not installed: "
                   'pip install orbax-checkpoint "gradtx[examples]"') from error

BATCH = 64
NAN_STEP_BEFORE_SAVE = 1  # the last step before the checkpoint has NaN gradients


class MLP(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 64, rngs=rngs)
    self.head = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    return self.head(jax.nn.relu(self.hidden(x)))


def make_optimizer(total_steps: int) -> gtx.GradientTransformation:
  schedule = gtx.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=max(1, total_steps // 5),
                                              decay_steps=total_steps, end_value=1e-4)
  return gtx.apply_if_finite(
      gtx.chain(gtx.clip_by_global_norm(1.0),
                gtx.lookahead(gtx.inject_hyperparams(gtx.adamw)(learning_rate=schedule,
                                                                weight_decay=1e-4),
                              sync_period=6, slow_step_size=0.5)),
      max_consecutive_errors=3)


def batch_at(x, y, step: int, seed: int = 0):
  """The batch of a step, from the step alone: a resumed run needs no saved data order."""
  per_epoch = len(x) // BATCH
  order = np.random.default_rng([seed, step // per_epoch]).permutation(len(x))
  index = order[(step % per_epoch) * BATCH:(step % per_epoch + 1) * BATCH]
  return x[index], y[index]


def setup(total_steps: int):
  """The data, the model's graph, the initial training state and the step function."""
  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  graphdef, params = nnx.split(MLP(nnx.Rngs(0)), nnx.Param)
  tx = make_optimizer(total_steps)

  def loss_fn(params, x, y):
    logits = nnx.merge(graphdef, params)(x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

  @jax.jit
  def train_step(state, x, y, poison):
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], x, y)
    grads = jax.tree.map(lambda g: jnp.where(poison, jnp.nan, g), grads)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return {"params": gtx.apply_updates(state["params"], updates), "opt_state": opt_state,
            "step": state["step"] + 1}, loss

  state = {"params": params, "opt_state": tx.init(params), "step": jnp.array(0, jnp.int32)}
  return x, y, state, train_step


def train(state, x, y, train_step, stop: int, poison_step: int | None = None):
  """Steps ``state`` on until its step count is ``stop``."""
  while int(state["step"]) < stop:
    step = int(state["step"])
    state, _ = train_step(state, *batch_at(x, y, step), jnp.asarray(step == poison_step))
  return state


def save(directory: pathlib.Path, state) -> None:
  with ocp.CheckpointManager(directory.absolute()) as manager:
    manager.save(int(state["step"]), args=ocp.args.StandardSave(state))
    manager.wait_until_finished()


def restore(directory: pathlib.Path, like):
  """The latest checkpoint, restored into the types, dtypes and shardings of ``like``."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  with ocp.CheckpointManager(directory.absolute()) as manager:
    return manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(abstract))


def save_final(path: pathlib.Path, state) -> None:
  leaves = jax.tree.leaves(state)
  np.savez(path, *[np.asarray(leaf) for leaf in leaves])


def load_final(path: pathlib.Path) -> list[np.ndarray]:
  with np.load(path) as data:
    return [data[f"arr_{i}"] for i in range(len(data.files))]


def identical(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
  """Same dtypes and the same bits (NaNs included) in every leaf."""
  return len(a) == len(b) and all(
      x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
      for x, y in zip(a, b))


def run_phase(args) -> None:
  x, y, state, train_step = setup(args.steps)
  directory = pathlib.Path(args.dir)
  poison_step = args.save_at - NAN_STEP_BEFORE_SAVE
  if args.phase == "uninterrupted":
    state = train(state, x, y, train_step, args.steps, poison_step)
    save_final(directory / "uninterrupted.npz", state)
  elif args.phase == "save":
    state = train(state, x, y, train_step, args.save_at, poison_step)
    save(directory / "checkpoints", state)
  elif args.phase == "resume":
    state = restore(directory / "checkpoints", like=state)
    step = int(state["step"])
    finite = state["opt_state"].notfinite_count
    print(f"restored step {step}: skipped steps in a row {int(finite)}, in all "
          f"{int(state['opt_state'].total_notfinite)}; leaf types "
          f"{sorted({type(leaf).__name__ for leaf in jax.tree.leaves(state)})}")
    state = train(state, x, y, train_step, args.steps, poison_step)
    save_final(directory / "resumed.npz", state)


def main(argv: list[str] | None = None) -> bool:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=100,
                      help="The number of training steps of a whole run "
                           "(default: %(default)s).")
  parser.add_argument("--save-at", type=int, default=41,
                      help="The step count at which the checkpoint is taken; it must be "
                           "at least 1 and below --steps (default: %(default)s).")
  parser.add_argument("--dir", default=None,
                      help="The folder for the checkpoints (default: a temporary folder, "
                           "deleted at the end).")
  parser.add_argument("--phase", choices=["uninterrupted", "save", "resume"], default=None,
                      help="Run this one phase only (default: the demo runs all three, "
                           "the last in a new process).")
  args = parser.parse_args(argv)
  if not 1 <= args.save_at < args.steps:
    parser.error("need 1 <= --save-at < --steps")
  if args.phase is not None:
    run_phase(args)
    return True

  with tempfile.TemporaryDirectory() as scratch:
    directory = pathlib.Path(args.dir or scratch)
    directory.mkdir(parents=True, exist_ok=True)
    common = ["--steps", str(args.steps), "--save-at", str(args.save_at), "--dir", str(directory)]
    run_phase(parser.parse_args(common + ["--phase", "uninterrupted"]))
    print(f"1. trained {args.steps} steps without interruption")
    run_phase(parser.parse_args(common + ["--phase", "save"]))
    print(f"2. trained {args.save_at} steps (step {args.save_at - NAN_STEP_BEFORE_SAVE} "
          f"with NaN gradients) and saved a checkpoint in {directory / 'checkpoints'}")
    print("3. a new process restores it and trains on:")
    subprocess.run([sys.executable, __file__, *common, "--phase", "resume"], check=True)
    same = identical(load_final(directory / "uninterrupted.npz"),
                     load_final(directory / "resumed.npz"))
  print(f"resumed run identical to the uninterrupted one, bit for bit: {same}")
  return same


if __name__ == "__main__":
  sys.exit(0 if main() else 1)

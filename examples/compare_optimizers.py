"""Compares gradtx optimizers on a Flax MLP trained on scikit-learn's handwritten digits.

The data set (1,797 8x8 images) ships inside scikit-learn, so nothing is downloaded. Every
optimizer trains the same `flax.nnx` model from the same initial weights on the same
batches; each is a few lines composed from gradtx's pieces (see ``OPTIMIZERS``). The
params are ``gtx.pack``ed (the loss written on ``gtx.unpack``; ``--no-packed`` trains the
plain params tree, with the same numbers up to float32 rounding). The script shows a
progress bar per run, prints a table (final training loss, test accuracy, median step
time, optimizer state size) and writes ``results.json`` and ``loss_curves.png`` into
``--out`` (default ``outputs/compare_optimizers``), and prints how long the run took (the default: fifteen optimizers, 30 epochs each):

    python examples/compare_optimizers.py
    python examples/compare_optimizers.py --optimizers adam,ranger,adabound --epochs 10
    python examples/compare_optimizers.py --out /tmp/digits --batch-size 32 --seed 1
    python examples/compare_optimizers.py --no-packed

Needs the ``examples`` extra: ``pip install "gradtx[examples]"`` (flax, scikit-learn,
matplotlib; without matplotlib the plot is skipped with a message).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import platform
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx

try:
  from flax import nnx
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
except ImportError as error:  # pragma: no cover - depends on the environment
  raise SystemExit(f"compare_optimizers.py needs {error.name}, which is not installed: "
                   'pip install "gradtx[examples]"') from error


class MLP(nnx.Module):
  """64 -> 128 -> 128 -> 10, with a LayerNorm after the first layer."""

  def __init__(self, rngs: nnx.Rngs, hidden: int = 128):
    self.dense1 = nnx.Linear(64, hidden, rngs=rngs)
    self.norm = nnx.LayerNorm(hidden, rngs=rngs)
    self.dense2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(self.norm(self.dense1(x)))
    x = jax.nn.relu(self.dense2(x))
    return self.head(x)


# name -> (description, factory of the optimizer from the total number of steps)
OPTIMIZERS: dict[str, tuple[str, Callable[[int], gtx.GradientTransformation]]] = {
    "sgd_nesterov_step": (
        "SGD, Nesterov momentum 0.9, lr 0.05 halved every third of the run",
        lambda total: gtx.sgd(gtx.step_decay(0.05, every=max(1, total // 3), factor=0.5),
                              momentum=0.9, nesterov=True)),
    "adam": ("Adam, lr 1e-3", lambda total: gtx.adam(1e-3)),
    "adamw_warmup_cosine": (
        "AdamW, wd 1e-4, lr warmup to 3e-3 over 10% then cosine decay",
        lambda total: gtx.adamw(
            gtx.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=max(1, total // 10),
                                             decay_steps=total, end_value=3e-5),
            weight_decay=1e-4)),
    "radam": ("RAdam, lr 3e-3", lambda total: gtx.radam(3e-3)),
    "ranger": ("Ranger (RAdam + Lookahead + centralisation), lr 3e-3",
               lambda total: gtx.ranger(3e-3)),
    "adabound": ("AdaBound, lr 1e-3 -> final lr 0.1", lambda total: gtx.adabound(1e-3, 0.1)),
    "lookahead_sgd": (
        "Lookahead(SGD momentum 0.9, lr 0.05), k=6, alpha=0.5",
        lambda total: gtx.lookahead(gtx.sgd(0.05, momentum=0.9), sync_period=6,
                                    slow_step_size=0.5)),
    "rmsprop_clip": ("clip global norm 1, then RMSProp lr 1e-3",
                     lambda total: gtx.chain(gtx.clip_by_global_norm(1.0), gtx.rmsprop(1e-3))),
    "nadam": ("Nadam, lr 1e-3", lambda total: gtx.nadam(1e-3)),
    # The switch test |lambda_k/(1-b2**k) - gamma_k| < switch_tol compares noisy
    # mini-batch projections: the paper's 1e-9 never holds here, 1e-3 does early on.
    "swats": ("SWATS (Adam, then SGD at the projected lr), lr 1e-3, switch_tol 1e-3",
              lambda total: gtx.swats(1e-3, switch_tol=1e-3)),
    "lion": ("Lion, lr 3e-4, weight decay 1e-3", lambda total: gtx.lion(3e-4)),
    "adafactor": ("Adafactor (factored second moments), lr 1e-2",
                  lambda total: gtx.adafactor(1e-2)),
    "lamb": ("LAMB (Adam with layer-wise trust ratios), lr 1e-2", lambda total: gtx.lamb(1e-2)),
    "muon": ("Muon (orthogonalised momentum; Adam for vectors), lr 2e-2",
             lambda total: gtx.muon(2e-2)),
    "schedule_free_adamw": ("Schedule-free AdamW, lr 3e-3, warmup 5% (evaluated at x)",
                            lambda total: gtx.schedule_free_adamw(
                                3e-3, warmup_steps=max(1, total // 20))),
}


# Whether the params are packed by default (--packed / --no-packed): packed steps were the
# faster ones for 14 of the 15 optimizers (benchmarks/README.md, "The main job with packed
# params", benchmarks/main_job_packed.py).
PACKED = True

# Optimizers whose params to evaluate are not the ones they train (schedule-free: the
# averaged iterate x, not the interpolation y the gradients are taken at).
EVAL_PARAMS = {"schedule_free_adamw": gtx.schedule_free_eval_params}


def load_data(seed: int):
  """Digits as float32 features in [0, 1], split 80/20 into train and test, stratified."""
  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


@functools.partial(jax.jit, static_argnums=0)  # compiled once: every run has the same model
def accuracy(graphdef, params, x, y) -> jax.Array:
  return jnp.mean(jnp.argmax(nnx.merge(graphdef, params)(x), axis=1) == y)


def state_bytes(state) -> int:
  return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(state)))


class ProgressBar:
  """A one-line progress bar on stderr, redrawn in place."""

  def __init__(self, label: str, total: int, width: int = 30):
    self.label, self.total, self.width = label, total, width
    self.start = time.perf_counter()

  def update(self, done: int, message: str = "") -> None:
    filled = round(self.width * done / self.total)
    bar = "#" * filled + "-" * (self.width - filled)
    sys.stderr.write(f"\r{self.label:<20} |{bar}| {done}/{self.total} epochs "
                     f"{message} {time.perf_counter() - self.start:5.1f}s")
    sys.stderr.flush()

  def close(self) -> None:
    sys.stderr.write("\n")
    sys.stderr.flush()


def setup(make_tx, total_steps: int, seed: int, packed: bool):
  """A fresh model's graphdef and params, the optimizer's state and the jitted step.

  With ``packed`` the params are ``gtx.pack``ed (one buffer: the MLP is all float32) and
  the loss is written on ``gtx.unpack``, so the gradients, updates and optimizer state
  are buffers too; shape-aware rules (Adafactor's factored moments, LAMB's trust ratios,
  Muon's orthogonalisation) see each leaf's own shape through per-leaf views.
  """
  graphdef, params = nnx.split(MLP(nnx.Rngs(seed)), nnx.Param)
  if packed:
    params = gtx.pack(params)
  tx = make_tx(total_steps)

  def loss_fn(params, x, y):
    tree = gtx.unpack(params) if packed else params
    return cross_entropy(nnx.merge(graphdef, tree)(x), y)

  @jax.jit
  def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return gtx.apply_updates(params, updates), opt_state, loss

  return graphdef, params, tx.init(params), train_step


def train(name: str, make_tx, data, args) -> dict:
  """Trains a fresh model with one optimizer; returns its losses, accuracy and timings."""
  x_train, x_test, y_train, y_test = data
  steps_per_epoch = len(x_train) // args.batch_size  # full batches only: one compiled shape
  total_steps = args.epochs * steps_per_epoch
  graphdef, params, opt_state, train_step = setup(make_tx, total_steps, args.seed,
                                                  args.packed)

  rng = np.random.default_rng(args.seed)  # the same batches for every optimizer
  progress = ProgressBar(name, args.epochs)
  losses, step_times, epoch_losses = [], [], []
  for epoch in range(1, args.epochs + 1):
    order = rng.permutation(len(x_train))
    epoch_start = len(losses)
    for i in range(steps_per_epoch):
      batch = order[i * args.batch_size:(i + 1) * args.batch_size]
      start = time.perf_counter()
      params, opt_state, loss = train_step(params, opt_state, x_train[batch], y_train[batch])
      losses.append(float(loss))  # waits for the step to finish
      step_times.append(time.perf_counter() - start)
    epoch_losses.append(float(np.mean(losses[epoch_start:])))
    progress.update(epoch, f"loss {epoch_losses[-1]:.4f}")
  progress.close()
  eval_params = EVAL_PARAMS.get(name, lambda state, p: p)(opt_state, params)
  if args.packed:
    eval_params = gtx.unpack(eval_params)
  return {
      "name": name,
      "description": OPTIMIZERS[name][0],
      "final_train_loss": epoch_losses[-1],
      "test_accuracy": float(accuracy(graphdef, eval_params, x_test, y_test)),
      # The first step includes compilation; the median of the rest is the step's cost.
      "median_step_ms": 1e3 * float(np.median(step_times[1:] or step_times)),
      "state_bytes": state_bytes(opt_state),
      # SWATS records the step (from 1) at which it switched to SGD; 0: it did not.
      "switch_step": _switch_step(opt_state),
      "finite": bool(np.all(np.isfinite(losses))),
      "epoch_losses": epoch_losses,
      "step_losses": losses,
  }


def _switch_step(opt_state) -> int | None:
  """The step a switching optimizer (SWATS) switched at, 0 if not yet; None for others."""
  step = gtx.tree_utils.tree_get(opt_state, "switch_step")
  return None if step is None else int(step)


def print_table(results: list[dict]) -> None:
  header = (f"{'optimizer':<20} {'final train loss':>16} {'test accuracy':>13} "
            f"{'median step':>12} {'state size':>11} {'switched at':>11}")
  print(header)
  print("-" * len(header))
  for r in results:
    switch = "-" if r["switch_step"] is None else (
        f"step {r['switch_step']}" if r["switch_step"] else "never")
    print(f"{r['name']:<20} {r['final_train_loss']:>16.4f} {r['test_accuracy']:>13.4f} "
          f"{r['median_step_ms']:>9.3f} ms {r['state_bytes']:>8,d} B {switch:>11}")


def plot(results: list[dict], steps_per_epoch: int, path: pathlib.Path) -> bool:
  """Draws the loss curves (a moving average over one epoch) into ``path``."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    print(f"matplotlib is not installed, so {path.name} was not drawn: "
          'pip install "gradtx[examples]" (or matplotlib)', file=sys.stderr)
    return False
  fig, ax = plt.subplots(figsize=(11, 5.5))
  window = max(1, steps_per_epoch)
  # Up to 20 curves stay apart: ten colours, each with a solid and a dashed line.
  colours = plt.get_cmap("tab10").colors
  for i, r in enumerate(results):
    losses = np.asarray(r["step_losses"])
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(window, len(losses) + 1) / steps_per_epoch, smooth, label=r["name"],
            color=colours[i % 10], linestyle="-" if i < 10 else "--", linewidth=1.4)
  ax.set(xlabel="epoch", ylabel="training loss (moving average over one epoch)",
         yscale="log", title="gradtx optimizers on scikit-learn digits (Flax MLP)")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                      help="The optimizers to compare, as comma-separated names from: "
                           f"{', '.join(OPTIMIZERS)} (default: all of them).")
  parser.add_argument("--epochs", type=int, default=30,
                      help="The number of passes over the training set "
                           "(default: %(default)s).")
  parser.add_argument("--batch-size", type=int, default=64,
                      help="The number of examples per step (default: %(default)s).")
  parser.add_argument("--seed", type=int, default=0,
                      help="Seeds the data split, the initial weights and the batch order "
                           "(default: %(default)s).")
  parser.add_argument("--packed", action=argparse.BooleanOptionalAction, default=PACKED,
                      help="Train on gtx.pack'ed params (the loss written on gtx.unpack), "
                           "or on the plain tree with --no-packed (default: %(default)s; "
                           "benchmarks/README.md has the step times of both).")
  parser.add_argument("--out", default="outputs/compare_optimizers",
                      help="The folder to write results.json and loss_curves.png into "
                           "(default: %(default)s).")
  args = parser.parse_args(argv)
  args.optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
  unknown = [name for name in args.optimizers if name not in OPTIMIZERS]
  if unknown or not args.optimizers:
    parser.error(f"unknown optimizers {unknown}; choose from {', '.join(OPTIMIZERS)}")
  if args.epochs < 1 or args.batch_size < 1:
    parser.error("--epochs and --batch-size must be positive")
  return args


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  data = load_data(args.seed)
  if args.batch_size > len(data[0]):
    raise SystemExit(f"--batch-size {args.batch_size} exceeds the {len(data[0])} training images")
  steps_per_epoch = len(data[0]) // args.batch_size
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  print(f"digits: {len(data[0])} train / {len(data[1])} test images; {args.epochs} epochs of "
        f"{steps_per_epoch} steps (batch {args.batch_size}); {len(args.optimizers)} optimizers "
        f"on {jax.devices()[0].platform}, params {'packed' if args.packed else 'as a tree'}")

  start = time.perf_counter()
  results = [train(name, OPTIMIZERS[name][1], data, args) for name in args.optimizers]
  wall = time.perf_counter() - start
  print_table(results)
  print(f"total {wall:.1f} s")

  report = {
      "settings": {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                   "steps_per_epoch": steps_per_epoch, "optimizers": args.optimizers,
                   "packed": args.packed},
      "environment": {"jax": jax.__version__, "gradtx": gtx.__version__,
                      "device": str(jax.devices()[0]), "python": platform.python_version()},
      "wall_seconds": wall,
      "results": results,
  }
  (out / "results.json").write_text(json.dumps(report, indent=1))
  written = [out / "results.json"]
  if plot(results, steps_per_epoch, out / "loss_curves.png"):
    written.append(out / "loss_curves.png")
  print("wrote " + ", ".join(map(str, written)))
  return report


if __name__ == "__main__":
  main()

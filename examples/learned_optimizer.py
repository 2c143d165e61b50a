"""A learned optimizer against tuned hand-designed ones (Andrychowicz et al. 2016).

The coordinatewise LSTM optimizer shipped with gradtx (meta-trained on random 10-D
quadratics ``||W theta - y||^2``, or on a small MLP on scikit-learn's digits) is run on
held-out problems of its family next to Adam, RMSProp, SGD with momentum and Nesterov's
momentum, each with its learning rate tuned on a grid for the lowest mean loss after the
horizon (tuned on the evaluation problems themselves, which favours the baselines). The
script prints the mean loss after ``--steps`` steps, then how the learned optimizer
generalises

* to a longer horizon (``--long-steps``, twice the 100 steps it was trained for; the
  baselines keep the learning rate tuned for ``--steps``), and
* to the other problem family (the quadratic-trained optimizer on the MLP and vice
  versa, next to the one trained there and tuned Adam),

and draws the loss curves into a PNG. It runs in a few minutes on a CPU:

    python examples/learned_optimizer.py
    python examples/learned_optimizer.py --family mlp
    python examples/learned_optimizer.py --meta-train-steps 300  # meta-train, don't load
    python examples/learned_optimizer.py --tiny                  # seconds, for tests
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import gradtx as gtx

BASELINES = {
    "Adam": lambda lr: gtx.adam(lr),
    "RMSProp": lambda lr: gtx.rmsprop(lr),
    "SGD+momentum": lambda lr: gtx.sgd(lr, momentum=0.9),
    "Nesterov": lambda lr: gtx.sgd(lr, momentum=0.9, nesterov=True),
}
OTHER = {"quadratic": "mlp", "mlp": "quadratic"}


def summary(curves: np.ndarray, step: int) -> tuple[float, float]:
  """Mean loss after ``step`` steps over the problems, and its standard error."""
  final = curves[:, step]
  return float(final.mean()), float(final.std(ddof=1) / np.sqrt(len(final)))


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--family", choices=["quadratic", "mlp"], default="quadratic",
                      help="The problem family the learned optimizer was trained on and is "
                           "tested on (default: %(default)s).")
  parser.add_argument("--num-problems", type=int, default=100,
                      help="The number of held-out problems (default: %(default)s).")
  parser.add_argument("--steps", type=int, default=100,
                      help="The horizon of the comparison, in steps (default: %(default)s).")
  parser.add_argument("--long-steps", type=int, default=200,
                      help="The longer horizon of the generalisation test, in steps "
                           "(default: %(default)s).")
  parser.add_argument("--grid", type=int, default=4,
                      help="The number of learning rates per decade in the tuning grid, "
                           "which runs from 1e-4 to 1 (default: %(default)s).")
  parser.add_argument("--meta-train-steps", type=int, default=0,
                      help="Meta-train this many steps instead of loading the shipped "
                           "meta-parameters; 0 loads them (default: %(default)s).")
  parser.add_argument("--seed", type=int, default=0,
                      help="The seed of the held-out problems (default: %(default)s).")
  parser.add_argument("--plot", default="learned_optimizer.png",
                      help="The PNG file to draw the loss curves into, '' for none "
                           "(default: %(default)s).")
  parser.add_argument("--tiny", action="store_true",
                      help="Use tiny settings (8 problems, 10 and 20 steps, a coarse grid), "
                           "for tests (default: off).")
  args = parser.parse_args(argv)
  if args.tiny:
    args.num_problems, args.steps, args.long_steps, args.grid = 8, 10, 20, 1

  start = time.perf_counter()
  if args.meta_train_steps:
    meta_params = {args.family: gtx.learned.meta_train(
        args.family, steps=args.meta_train_steps, batch_size=16 if args.tiny else 64,
        log_every=max(1, args.meta_train_steps // 5)).meta_params}
    meta_params[OTHER[args.family]] = gtx.learned.pretrained(OTHER[args.family])
  else:
    meta_params = {name: gtx.learned.pretrained(name) for name in OTHER}
  grid = [float(x) for x in np.logspace(-4, 0, 4 * args.grid + 1)]
  evaluation = dict(num_problems=args.num_problems, seed=args.seed)

  def lstm(family):
    return gtx.learned.lstm_optimizer(meta_params[family])

  # The comparison on the training family, over the long horizon (its first --steps
  # steps are the short one; each baseline's learning rate is tuned for --steps). The
  # optimizer trained on the other family runs too: cross-family generalisation.
  family, other = args.family, OTHER[args.family]
  ours = f"LSTM ({family})"
  curves = {name: gtx.learned.evaluate(lstm(name), family, steps=args.long_steps, **evaluation)
            for name in (family, other)}
  curves = {ours: curves[family], f"LSTM ({other})": curves[other]}
  learning_rates = dict.fromkeys(curves)
  for name, make in BASELINES.items():
    lr, _, _ = gtx.learned.tune_learning_rate(make, grid, family, steps=args.steps, **evaluation)
    curves[name] = gtx.learned.evaluate(make(lr), family, steps=args.long_steps, **evaluation)
    learning_rates[name] = lr

  print(f"Held-out {family} problems ({args.num_problems}, seed {args.seed}); baselines' "
        f"learning rates tuned on a grid of {len(grid)} from 1e-4 to 1 for step "
        f"{args.steps}.\nmean ± standard error; 'ours lower': on how many problems "
        f"{ours} ends lower after {args.steps} steps (paired)")
  print(f"{'optimizer':<18}{'lr':>8}{f'loss@{args.steps}':>20}{f'median@{args.steps}':>12}"
        f"{f'loss@{args.long_steps}':>20}{'ours lower':>12}")
  table = {}
  for name, curve in curves.items():
    short, long_ = summary(curve, args.steps), summary(curve, args.long_steps)
    median = float(np.median(curve[:, args.steps]))
    table[name] = {"lr": learning_rates[name], "short": short[0], "median": median,
                   "long": long_[0]}
    lr = "-" if learning_rates[name] is None else f"{learning_rates[name]:.3g}"
    lower = "" if name == ours else (
        f"{int((curves[ours][:, args.steps] < curve[:, args.steps]).sum())}"
        f"/{args.num_problems}")
    note = "  (trained on the other family)" if name == f"LSTM ({other})" else ""
    print(f"{name:<18}{lr:>8}{short[0]:>11.4g} ± {short[1]:<6.2g}{median:>12.4g}"
          f"{long_[0]:>11.4g} ± {long_[1]:<6.2g}{lower:>12}{note}")
  best_baseline = min(BASELINES, key=lambda name: table[name]["short"])
  wins = table[ours]["short"] < table[best_baseline]["short"]
  print(f"after {args.steps} steps the learned optimizer {'beats' if wins else 'does NOT beat'}"
        f" the best tuned baseline ({best_baseline})")
  wins_long = table[ours]["long"] < min(table[name]["long"] for name in BASELINES)
  print(f"after {args.long_steps} steps (trained for 100) it "
        f"{'still beats' if wins_long else 'does not beat'} every baseline")

  # Cross-family generalisation: both learned optimizers and tuned Adam on the other one.
  cross = {f"LSTM ({name})": gtx.learned.evaluate(lstm(name), other, steps=args.steps,
                                                  **evaluation) for name in (family, other)}
  lr, _, _ = gtx.learned.tune_learning_rate(BASELINES["Adam"], grid, other, steps=args.steps,
                                            **evaluation)
  cross["Adam"] = gtx.learned.evaluate(BASELINES["Adam"](lr), other, steps=args.steps,
                                       **evaluation)
  print(f"\nCross-family: held-out {other} problems, loss@{args.steps}")
  for name, curve in cross.items():
    mean, error = summary(curve, args.steps)
    table[f"{name} on {other}"] = {"short": mean}
    trained = " (trained on the other family)" if name == ours else ""
    tuned = f" (lr {lr:.3g})" if name == "Adam" else ""
    print(f"{name + tuned:<24}{mean:>13.4g} ± {error:<6.2g}{trained}")

  if args.plot:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in curves.items():
      axes[0].plot(curve.mean(axis=0), label=name, lw=2.5 if name.startswith("LSTM") else 1.2)
    axes[0].axvline(args.steps, color="grey", ls=":", lw=1)
    axes[0].set(title=f"held-out {family} problems", xlabel="step", ylabel="mean loss",
                yscale="log")
    for name, curve in cross.items():
      axes[1].plot(curve.mean(axis=0), label=name)
    axes[1].set(title=f"cross-family: {other} problems", xlabel="step", yscale="log")
    for ax in axes:
      ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"\nloss curves written to {args.plot}")
  print(f"({time.perf_counter() - start:.0f} s)")
  return table


if __name__ == "__main__":
  main()

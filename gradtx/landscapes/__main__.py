"""``python -m gradtx.landscapes``: score a default set of optimizers on the Schaul et al.
2014 unit tests, print the table, and write the pictures.

  python -m gradtx.landscapes --out landscapes           # whole suite, ten optimizers
  python -m gradtx.landscapes --filter 1-D --seeds 3     # a quick look
  python -m gradtx.landscapes --no-suite --functions rosenbrock --out docs

Writes ``landscapes_suite.png`` (category per case and optimizer) and
``landscapes_<function>.png`` (trajectories) into ``--out``. The progress bar goes to
stderr.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import gradtx as gtx
from gradtx import landscapes

OPTIMIZERS = {
    "sgd": lambda lr: gtx.sgd(lr),
    "momentum": lambda lr: gtx.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: gtx.sgd(lr, momentum=0.9, nesterov=True),
    "adagrad": lambda lr: gtx.adagrad(lr),
    "rmsprop": lambda lr: gtx.rmsprop(lr),
    "adam": lambda lr: gtx.adam(lr),
    "amsgrad": lambda lr: gtx.amsgrad(lr),
    "nadam": lambda lr: gtx.nadam(lr),
    "radam": lambda lr: gtx.radam(lr),
    "adamax": lambda lr: gtx.adamax(lr),
}
"""The default optimizers, each over the default learning-rate grid."""

TRAJECTORIES = {"sgd": gtx.sgd(2e-3), "momentum": gtx.sgd(2e-3, momentum=0.9),
                "adam": gtx.adam(0.2), "rmsprop": gtx.rmsprop(0.01)}
"""The optimizers drawn on the 2-D functions."""

PICTURES = ("rosenbrock", "beale", "himmelblau", "saddle")


def progress_bar(stream=None, width=30):
  """A ``run_suite`` progress callback drawing ``[#####.....] 3/11 adam`` in place on
  ``stream`` (default: stderr)."""
  begin = time.perf_counter()

  def report(done, total, name):
    out = stream or sys.stderr
    filled = width * done // total
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                 f"{time.perf_counter() - begin:6.1f}s {name:<20}")
    if done == total:
      out.write("\n")
    out.flush()

  return report


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m gradtx.landscapes",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="landscapes", help="folder for the PNG files")
  parser.add_argument("--filter", default=None,
                      help="run only cases whose name or group contains this text")
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                      help="comma-separated subset of " + ", ".join(OPTIMIZERS))
  parser.add_argument("--functions", default=",".join(PICTURES),
                      help="2-D functions to draw trajectories on ('' for none)")
  parser.add_argument("--no-suite", action="store_true", help="only draw trajectories")
  parser.add_argument("--no-plots", action="store_true", help="only print the table")
  args = parser.parse_args(argv)

  out = pathlib.Path(args.out)
  if not args.no_suite:
    names = [n for n in args.optimizers.split(",") if n]
    unknown = sorted(set(names) - set(OPTIMIZERS))
    if unknown:
      parser.error(f"unknown optimizers {unknown}; choose from {', '.join(OPTIMIZERS)}")
    result = landscapes.run_suite({n: OPTIMIZERS[n] for n in names}, filter=args.filter,
                                  seeds=args.seeds, steps=args.steps,
                                  progress=progress_bar())
    print(result)
    print(f"({result.seconds:.1f} s)")
    if not args.no_plots:
      out.mkdir(parents=True, exist_ok=True)
      landscapes.plot_suite(result, path=out / "landscapes_suite.png")
      print(f"wrote {out / 'landscapes_suite.png'}")
  if not args.no_plots:
    for name in [n for n in args.functions.split(",") if n]:
      if name not in landscapes.FUNCTIONS:
        parser.error(f"unknown function {name!r}; choose from {', '.join(landscapes.FUNCTIONS)}")
      out.mkdir(parents=True, exist_ok=True)
      path = out / f"landscapes_{name}.png"
      landscapes.plot_trajectories(landscapes.FUNCTIONS[name], TRAJECTORIES, steps=200,
                                   path=path)
      print(f"wrote {path}")


if __name__ == "__main__":
  main()

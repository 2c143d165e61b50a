"""``python -m gradtx.landscapes``: score a default set of optimizers on the Schaul et al.
2014 unit tests, print the table, and write the pictures.

  python -m gradtx.landscapes --out landscapes           # whole suite, ten optimizers
  python -m gradtx.landscapes --filter 1-D --seeds 3     # a quick look
  python -m gradtx.landscapes --no-suite --functions rosenbrock --out docs

Writes ``landscapes_suite.png`` (category per case and optimizer) and
``landscapes_<function>.png`` (trajectories) into ``--out``; the pictures need matplotlib
(``pip install "gradtx[examples]"``), which is checked before the suite runs. With
``--no-plots`` only the table is printed and matplotlib is not needed. The progress bar
goes to stderr.
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


EXAMPLES = """\
examples:
  python -m gradtx.landscapes --out landscapes           # whole suite, ten optimizers
  python -m gradtx.landscapes --filter 1-D --seeds 3     # a quick look
  python -m gradtx.landscapes --no-suite --functions rosenbrock --out docs
  python -m gradtx.landscapes --no-plots                 # the table only, no matplotlib
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
  """Shows each option's default (unless it is None, which the help text explains) and
  keeps the examples' lines as written."""

  def _get_help_string(self, action):
    if action.default is None:
      return action.help
    return super()._get_help_string(action)


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m gradtx.landscapes",
      description="Score optimizers on the Schaul et al. 2014 unit tests, print the table\n"
                  "and draw the pictures (they need matplotlib: pip install\n"
                  "\"gradtx[examples]\"). The progress bar goes to stderr.",
      epilog=EXAMPLES, formatter_class=_HelpFormatter)
  parser.add_argument("--out", default="landscapes",
                      help="The folder to write the PNG files into.")
  parser.add_argument("--filter", default=None,
                      help="Run only the cases whose name or group contains this text "
                           "(default: every case).")
  parser.add_argument("--seeds", type=int, default=10,
                      help="The number of seeds each case is run with.")
  parser.add_argument("--steps", type=int, default=100,
                      help="The number of optimizer steps per run.")
  parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                      help="A comma-separated subset of the optimizers to score.")
  parser.add_argument("--functions", default=",".join(PICTURES),
                      help="A comma-separated list of 2-D functions to draw trajectories "
                           "on ('' for none).")
  parser.add_argument("--no-suite", action="store_true",
                      help="Only draw the trajectories; do not score the optimizers.")
  parser.add_argument("--no-plots", action="store_true",
                      help="Only print the table; draw no pictures (matplotlib is then "
                           "not needed).")
  args = parser.parse_args(argv)

  names = [n for n in args.optimizers.split(",") if n]
  unknown = sorted(set(names) - set(OPTIMIZERS))
  if unknown and not args.no_suite:
    parser.error(f"unknown optimizers {unknown}; choose from {', '.join(OPTIMIZERS)}")
  functions = [n for n in args.functions.split(",") if n] if not args.no_plots else []
  for name in functions:
    if name not in landscapes.FUNCTIONS:
      parser.error(f"unknown function {name!r}; choose from {', '.join(landscapes.FUNCTIONS)}")
  if not args.no_plots and (functions or not args.no_suite):
    # Checked before the suite runs, so that a missing matplotlib does not cost the run.
    try:
      import matplotlib.pyplot  # noqa: F401
    except ImportError:
      parser.error('the pictures need matplotlib: pip install "gradtx[examples]" (or '
                   "pass --no-plots to print only the table)")

  out = pathlib.Path(args.out)
  if not args.no_suite:
    result = landscapes.run_suite({n: OPTIMIZERS[n] for n in names}, filter=args.filter,
                                  seeds=args.seeds, steps=args.steps,
                                  progress=progress_bar())
    print(result)
    print(f"({result.seconds:.1f} s)")
    if not args.no_plots:
      out.mkdir(parents=True, exist_ok=True)
      landscapes.plot_suite(result, path=out / "landscapes_suite.png")
      print(f"wrote {out / 'landscapes_suite.png'}")
  for name in functions:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"landscapes_{name}.png"
    landscapes.plot_trajectories(landscapes.FUNCTIONS[name], TRAJECTORIES, steps=200,
                                 path=path)
    print(f"wrote {path}")

if __name__ == "__main__":
  main()

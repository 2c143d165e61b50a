"""Meta-trains learned optimizers' weights and saves them: ``python -m gradtx.learned``.

    python -m gradtx.learned                                 # both families, ./learned_optimizer
    python -m gradtx.learned quadratic --out my_weights      # one family, into my_weights
    python -m gradtx.learned --out gradtx/learned/pretrained  # reproduce the shipped files
    python -m gradtx.learned --optimizer hierarchical --out my_weights  # the hierarchical RNN

Each family is meta-trained with the settings in :data:`SETTINGS` (recorded in the file
and, for the shipped files, returned by :func:`gradtx.learned.pretrained_config`);
meta-training is deterministic given the seed, so on the same machine and JAX version the
files come out identical to the shipped ones. Nothing is written into the installed
package unless ``--out`` names its ``pretrained`` folder.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import gradtx as gtx

SETTINGS = {
    "quadratic": dict(problem_family="quadratic", steps=2000, unroll=20, horizon=100,
                      batch_size=64, meta_learning_rate=3e-3, first_order=True, seed=0),
    "mlp": dict(problem_family="mlp", steps=200, unroll=20, horizon=100, batch_size=2,
                meta_learning_rate=3e-3, first_order=True, seed=0),
    # Wichrowska et al. 2017's hierarchical RNN on a mixture of small problems (one family
    # per 200-step horizon, in turn), none of them the evaluation's 10-D quadratics or
    # 20-unit, 128-image digits MLPs; mean log loss over whole 200-step runs (no
    # truncation), with the exact meta-gradient: the first-order one (second derivatives
    # dropped) made every checkpoint worse than the start, at any meta learning rate
    # tried (3e-5 to 3e-4) and with 40- or 200-step unrolls.
    "hierarchical": dict(
        optimizer="hierarchical",
        problem_family=[["quadratic", {"num_dims": 8, "init_scale": 1.0}],
                        ["mlp", {"hidden_size": 8, "batch_size": 32}],
                        ["convnet", {"channels": 4, "batch_size": 32}],
                        ["mlp", {"hidden_size": 32, "batch_size": 64, "init_scale": 2.0}]],
        steps=60, unroll=200, horizon=200, batch_size=8, meta_learning_rate=1e-4,
        clip_meta_gradient=1.0, init_learning_rate=0.1, first_order=False, seed=0,
        # Model selection: every 20 meta-steps (and before the first) the full 200-step
        # loss on 16 validation problems of the goals' families, from their own stream
        # (not the benchmark's); the best is kept, the start included. In this run it is
        # the one after 20 meta-steps (at 3e-4, checkpoints after 20 were far worse).
        validation=["quadratic", "mlp"], validate_every=20, validation_problems=16,
        validation_steps=200),
}
OPTIMIZER_FILES = {"lstm": ("quadratic", "mlp"), "hierarchical": ("hierarchical",)}
"""Which entries of :data:`SETTINGS` each ``--optimizer`` trains (the default: all)."""

DEFAULT_OUT = pathlib.Path("learned_optimizer")
"""Where the files go without ``--out``: a folder under the current directory."""

EPILOG = """\
Each family is written to OUT/<family>.npz (the hierarchical optimizer's to
OUT/hierarchical.npz). Load one with

  import gradtx as gtx
  meta_params, config = gtx.learned.load_meta_params("learned_optimizer/quadratic.npz")
  tx = gtx.learned.lstm_optimizer(meta_params)  # or hierarchical_optimizer(...)

where config holds the meta-training settings the file records. To reproduce the weights
shipped with gradtx (what gtx.learned.pretrained(...) returns), run from the repository
root with --out gradtx/learned/pretrained.
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
  """Shows every option's default and keeps the epilog's code lines as written."""


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m gradtx.learned",
      description="Meta-train learned optimizers' weights and save them as .npz files.",
      epilog=EPILOG, formatter_class=_HelpFormatter)
  parser.add_argument("families", nargs="*", metavar="family", default=None,
                      help="The LSTM's families to meta-train, any of "
                           f"{', '.join(OPTIMIZER_FILES['lstm'])}; none given: all "
                           "of the --optimizer's.")
  parser.add_argument("--optimizer", choices=list(OPTIMIZER_FILES), default="lstm",
                      help="The learned optimizer: the coordinatewise LSTM (Andrychowicz "
                           "et al. 2016) or the hierarchical RNN (Wichrowska et al. 2017, "
                           "one file, hierarchical.npz, for a mixture of problems).")
  parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                      help="The folder to write <family>.npz into; it is created if "
                           "missing, and relative paths are taken from the current "
                           "directory.")
  parser.add_argument("--log-every", type=int, default=100,
                      help="Print meta-training progress every this many meta-steps "
                           "(0: never).")
  args = parser.parse_args(argv)
  choices = OPTIMIZER_FILES[args.optimizer]
  if args.families is None or not args.families:
    args.families = list(choices)
  unknown = set(args.families) - set(choices)
  if unknown:
    parser.error(f"unknown families {sorted(unknown)} for --optimizer {args.optimizer}; "
                 f"choose from {list(choices)}")
  out = args.out.resolve()
  out.mkdir(parents=True, exist_ok=True)
  print(f"writing into {out}")
  for name in args.families:
    settings = SETTINGS[name]
    start = time.perf_counter()
    meta_params, history = gtx.learned.meta_train(**settings, log_every=args.log_every)
    path = out / f"{name}.npz"
    gtx.learned.save_meta_params(path, meta_params, **settings)
    if "best_step" in history:
      print(f"{name}: kept the meta-parameters after {history['best_step']} meta-steps "
            "(0: the initialisation), the best on the validation problems")
    print(f"{name}: wrote {path} ({path.stat().st_size} bytes) after "
          f"{time.perf_counter() - start:.0f} s; final meta-loss "
          f"{history['meta_loss'][-1]:.4g}")
  print(f"load with gtx.learned.load_meta_params({str(out / '<family>.npz')!r})")


if __name__ == "__main__":
  main()

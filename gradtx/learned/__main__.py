"""Meta-trains the LSTM optimizer's weights and saves them: ``python -m gradtx.learned``.

    python -m gradtx.learned                                 # both families, ./learned_optimizer
    python -m gradtx.learned quadratic --out my_weights      # one family, into my_weights
    python -m gradtx.learned --out gradtx/learned/pretrained  # reproduce the shipped files

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
}

DEFAULT_OUT = pathlib.Path("learned_optimizer")
"""Where the files go without ``--out``: a folder under the current directory."""

EPILOG = """\
Each family is written to OUT/<family>.npz. Load one with

  import gradtx as gtx
  meta_params, config = gtx.learned.load_meta_params("learned_optimizer/quadratic.npz")
  tx = gtx.learned.lstm_optimizer(meta_params)

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
      description="Meta-train the LSTM optimizer's weights and save them as .npz files.",
      epilog=EPILOG, formatter_class=_HelpFormatter)
  parser.add_argument("families", nargs="*", metavar="family", default=list(SETTINGS),
                      help=f"The families to meta-train, any of {', '.join(SETTINGS)}.")
  parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                      help="The folder to write <family>.npz into; it is created if "
                           "missing, and relative paths are taken from the current "
                           "directory.")
  parser.add_argument("--log-every", type=int, default=100,
                      help="Print meta-training progress every this many meta-steps "
                           "(0: never).")
  args = parser.parse_args(argv)
  unknown = set(args.families) - set(SETTINGS)
  if unknown:
    parser.error(f"unknown families {sorted(unknown)}; choose from {list(SETTINGS)}")
  out = args.out.resolve()
  out.mkdir(parents=True, exist_ok=True)
  print(f"writing into {out}")
  for name in args.families:
    settings = SETTINGS[name]
    start = time.perf_counter()
    meta_params, history = gtx.learned.meta_train(**settings, log_every=args.log_every)
    path = out / f"{name}.npz"
    gtx.learned.save_meta_params(path, meta_params, **settings)
    print(f"{name}: wrote {path} ({path.stat().st_size} bytes) after "
          f"{time.perf_counter() - start:.0f} s; final meta-loss "
          f"{history['meta_loss'][-1]:.4g}")
  print(f"load with gtx.learned.load_meta_params({str(out / '<family>.npz')!r})")


if __name__ == "__main__":
  main()

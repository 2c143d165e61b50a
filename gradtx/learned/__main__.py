"""Reproduces the shipped meta-parameters: ``python -m gradtx.learned``.

    python -m gradtx.learned                      # both families, into the package
    python -m gradtx.learned quadratic --out DIR  # one family, elsewhere

Each family is meta-trained with the settings in :data:`SETTINGS` (recorded in the file
and returned by :func:`gradtx.learned.pretrained_config`); meta-training is deterministic
given the seed, so on the same machine and JAX version the files come out identical.
"""

from __future__ import annotations

import argparse
import pathlib
import time

from gradtx.learned.meta_train import meta_train
from gradtx.learned.serialization import save_meta_params

SETTINGS = {
    "quadratic": dict(problem_family="quadratic", steps=2000, unroll=20, horizon=100,
                      batch_size=64, meta_learning_rate=3e-3, first_order=True, seed=0),
    "mlp": dict(problem_family="mlp", steps=200, unroll=20, horizon=100, batch_size=2,
                meta_learning_rate=3e-3, first_order=True, seed=0),
}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("families", nargs="*", metavar="family",
                      help=f"which to train, of {list(SETTINGS)} (default: all)")
  parser.add_argument("--out", type=pathlib.Path,
                      default=pathlib.Path(__file__).resolve().parent / "pretrained",
                      help="directory to write <family>.npz into (default: the package's)")
  parser.add_argument("--log-every", type=int, default=100)
  args = parser.parse_args(argv)
  unknown = set(args.families) - set(SETTINGS)
  if unknown:
    parser.error(f"unknown families {sorted(unknown)}; choose from {list(SETTINGS)}")
  args.out.mkdir(parents=True, exist_ok=True)
  for name in args.families or list(SETTINGS):
    settings = SETTINGS[name]
    start = time.perf_counter()
    meta_params, history = meta_train(**settings, log_every=args.log_every)
    path = args.out / f"{name}.npz"
    save_meta_params(path, meta_params, **settings)
    print(f"{name}: wrote {path} ({path.stat().st_size} bytes) after "
          f"{time.perf_counter() - start:.0f} s; final meta-loss "
          f"{history['meta_loss'][-1]:.4g}")


if __name__ == "__main__":
  main()

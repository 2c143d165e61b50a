"""Saving and loading meta-parameters, and the pretrained ones shipped with gradtx.

Meta-parameters are stored as a NumPy ``.npz`` file: one float32 array per entry of the
dict, plus a ``__config__`` entry, a JSON string recording how they were trained (family,
steps, seed, ... and the ``p`` and ``output_scale`` to use them with). The LSTM's and the
hierarchical optimizer's meta-parameters are told apart by their keys.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from gradtx.learned.hierarchical import hierarchical_architecture, is_hierarchical
from gradtx.learned.lstm import MetaParams, architecture

PRETRAINED = ("quadratic", "mlp", "hierarchical")
_CONFIG = "__config__"


def _check(meta_params: MetaParams) -> None:
  if is_hierarchical(meta_params):
    hierarchical_architecture(meta_params)
  else:
    architecture(meta_params)


def save_meta_params(path: str | os.PathLike, meta_params: MetaParams,
                     **config: Any) -> None:
  """Writes ``meta_params`` (and a JSON-serialisable ``config``) to ``path`` (.npz)."""
  _check(meta_params)
  arrays = {name: np.asarray(value, np.float32) for name, value in meta_params.items()}
  with open(path, "wb") as file:
    np.savez_compressed(file, **arrays, **{_CONFIG: np.asarray(json.dumps(config))})


def load_meta_params(path: str | os.PathLike) -> tuple[MetaParams, dict[str, Any]]:
  """Reads what :func:`save_meta_params` wrote: ``(meta_params, config)``."""
  with np.load(path) as npz:
    config = json.loads(str(npz[_CONFIG])) if _CONFIG in npz.files else {}
    meta_params = {name: jnp.asarray(npz[name]) for name in npz.files if name != _CONFIG}
  _check(meta_params)
  return meta_params, config


def pretrained_path(name: str):
  if name not in PRETRAINED:
    raise ValueError(f"pretrained: unknown name {name!r}; shipped: {list(PRETRAINED)}")
  return importlib.resources.files("gradtx.learned").joinpath("pretrained", f"{name}.npz")


def pretrained(name: str) -> MetaParams:
  """The shipped meta-parameters: ``"quadratic"``, ``"mlp"`` or ``"hierarchical"``.

  Use the LSTM's as ``lstm_optimizer(pretrained("quadratic"))``; they were meta-trained
  with ``p = 10`` and ``output_scale = 0.1`` (the defaults) by ``python -m gradtx.learned
  --out gradtx/learned/pretrained``. Use ``hierarchical_optimizer(pretrained(
  "hierarchical"))`` for the hierarchical RNN's, made by ``python -m gradtx.learned
  --optimizer hierarchical --out gradtx/learned/pretrained``: 20 meta-steps (the best
  checkpoint on validation problems) from the Adam-like ``init_hierarchical_meta_params(
  key, learning_rate=0.1)`` on a mixture of small problems, with the exact
  meta-gradient. :func:`pretrained_config` returns the settings.
  """
  with pretrained_path(name).open("rb") as file:
    return load_meta_params(file)[0]


def pretrained_config(name: str) -> dict[str, Any]:
  """How the shipped meta-parameters ``name`` were trained (``meta_train``'s arguments)."""
  with pretrained_path(name).open("rb") as file:
    return load_meta_params(file)[1]

"""The drop-in promise: Optax training scripts, written the way Optax's documentation
writes them (``examples/optax_dropin/``), give the same numbers when ``import optax``
finds gradtx instead. Oracle: the same script run with Optax 0.2.8 in the same process.
"""

import contextlib
import importlib.util
import pathlib
import sys

import numpy as np
import optax
import pytest

import gradtx

SCRIPTS = sorted((pathlib.Path(__file__).resolve().parent.parent / "examples"
                  / "optax_dropin").glob("*.py"))
NAMESPACES = ("contrib", "tree_utils", "tree", "losses", "schedules", "transforms")


@contextlib.contextmanager
def optax_is(module):
  """``import optax`` (and ``import optax.<namespace>``) find ``module`` meanwhile."""
  names = ("optax", *(f"optax.{n}" for n in NAMESPACES))
  saved = {name: sys.modules.get(name) for name in names}
  sys.modules["optax"] = module
  for name in NAMESPACES:
    if hasattr(module, name):
      sys.modules[f"optax.{name}"] = getattr(module, name)
  try:
    yield
  finally:
    for name, value in saved.items():
      if value is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = value


def run(script, module, capsys):
  with optax_is(module):
    spec = importlib.util.spec_from_file_location(f"dropin_{script.stem}", script)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    assert loaded.optax is module
    result = loaded.main()
  return result, capsys.readouterr().out


def test_there_are_scripts():
  assert {s.stem for s in SCRIPTS} >= {"mlp_digits", "gradient_accumulation",
                                       "schedule_free"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_gives_the_same_numbers_with_gradtx(script, capsys):
  theirs, their_log = run(script, optax, capsys)
  ours, our_log = run(script, gradtx, capsys)
  assert ours.keys() == theirs.keys()
  for key in theirs:
    np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6, err_msg=key)
  # Every logged number agrees too (the logs print 4-8 significant digits).
  their_numbers = [float(w) for w in their_log.split() if _is_number(w)]
  our_numbers = [float(w) for w in our_log.split() if _is_number(w)]
  assert len(our_numbers) == len(their_numbers) > 0
  np.testing.assert_allclose(our_numbers, their_numbers, rtol=1e-4, atol=2e-6)


def _is_number(word):
  try:
    float(word)
  except ValueError:
    return False
  return True

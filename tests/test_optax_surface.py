"""The contract ``import gradtx as optax`` rests on, checked name by name against Optax
0.2.8 itself (introspection only, nothing is compiled).

For every public name gradtx shares with Optax, at the top level and in each submodule of
``NAMESPACES``:

* a function's (or class's) parameters are Optax's, in Optax's order, with Optax's names,
  kinds and defaults; gradtx may add keyword-only parameters after them, and may give a
  default to a parameter Optax requires (an Optax call is still a gradtx call);
* a state class (a NamedTuple) starts with Optax's fields, in Optax's order (gradtx may
  append fields, as ``LookaheadState`` appends its slow weights).

``test_every_optax_name_exists_in_gradtx`` checks that nothing Optax has is missing,
including the submodules ``projections``, ``second_order``, ``perturbations``,
``assignment`` and ``experimental.aggregating``.
"""

import collections.abc
import enum
import inspect
import math
import types
import typing

import numpy as np
import optax
import pytest

import gradtx as gtx

NAMESPACES = ("", "transforms", "schedules", "contrib", "tree_utils", "tree", "losses",
              "projections", "second_order", "perturbations", "assignment", "experimental",
              "experimental.aggregating")

# Names gradtx deliberately defines otherwise.
DEPARTURES = {
    # optax.bias_correction is tree_utils.tree_bias_correction(moment, decay, count);
    # gtx.bias_correction is the transform (optax.tree_utils.tree_bias_correction is the
    # function, under the same signature).
    ("", "bias_correction"),
}


def public_names(module):
  """The module's public names, without what it merely imported: other modules (typing,
  ...) and ``typing``'s or ``collections.abc``'s own names (``Any``, ``Sequence``)."""
  names = set()
  for name in dir(module):
    value = getattr(module, name)
    if name.startswith("_") or (isinstance(value, types.ModuleType)
                                and not value.__name__.startswith(module.__name__)):
      continue
    if any(getattr(m, name, None) is value for m in (typing, collections.abc)):
      continue
    names.add(name)
  return names


def namespace(root, name):
  """``root.name`` (``root`` for "", dotted names for submodules of submodules), or an
  empty module where gradtx lacks it."""
  for part in name.split(".") if name else ():
    root = getattr(root, part, types.ModuleType(f"missing_{name}"))
  return root


def shared_names():
  for ns in NAMESPACES:
    theirs, ours = namespace(optax, ns), namespace(gtx, ns)
    for name in sorted(public_names(theirs)):
      if hasattr(ours, name) and (ns, name) not in DEPARTURES:
        yield pytest.param(ns, name, id=f"{ns or 'optax'}.{name}")


def is_state_class(x):
  return isinstance(x, type) and issubclass(x, tuple) and hasattr(x, "_fields")


def is_transform(x):
  return callable(getattr(x, "init", None)) and callable(getattr(x, "update", None))


def same_default(a, b):
  """Defaults that behave the same: equal values, both transforms (a default line
  search), functions of one name, or members of one name of enums of one name."""
  if a is b or (is_transform(a) and is_transform(b)):
    return True
  if callable(a) and callable(b):
    # Optax's private helpers may be public in gradtx (decay_rate_pow).
    return (getattr(a, "__name__", "").lstrip("_") == getattr(b, "__name__", "").lstrip("_"))
  if isinstance(a, enum.Enum) and isinstance(b, enum.Enum):  # gradtx's own enum classes
    return (type(a).__name__, a.name, a.value) == (type(b).__name__, b.name, b.value)
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return True
  if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
    return a is b
  try:
    return bool(np.all(a == b))
  except Exception:  # pylint: disable=broad-except
    return False


def signature_differences(theirs, ours):
  """What keeps an Optax call from being a gradtx call with the same meaning."""
  theirs = list(inspect.signature(theirs).parameters.values())
  ours = list(inspect.signature(ours).parameters.values())
  problems = []
  for i, t in enumerate(theirs):
    if i >= len(ours):
      problems.append(f"Optax's {t.name} is missing")
      continue
    o = ours[i]
    if (o.name, o.kind) != (t.name, t.kind):
      problems.append(f"parameter {i}: Optax's {t.name} ({t.kind.description}), gradtx's "
                      f"{o.name} ({o.kind.description})")
    elif t.default is not inspect.Parameter.empty and not same_default(t.default,
                                                                        o.default):
      problems.append(f"{t.name}: Optax's default {t.default!r}, gradtx's {o.default!r}")
  for o in ours[len(theirs):]:
    if o.kind not in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD):
      problems.append(f"gradtx's addition {o.name} is not keyword-only")
  return problems


def has_signature(x):
  try:
    inspect.signature(x)
  except (TypeError, ValueError):
    return False
  return True


@pytest.mark.parametrize("ns, name", list(shared_names()))
def test_shared_name_keeps_optax_contract(ns, name):
  theirs, ours = getattr(namespace(optax, ns), name), getattr(namespace(gtx, ns), name)
  if isinstance(theirs, types.ModuleType):
    assert isinstance(ours, types.ModuleType), f"{name} is a module in Optax"
  elif is_state_class(theirs):
    assert is_state_class(ours), f"{name}: Optax's is a NamedTuple, gradtx's {ours!r}"
    fields = tuple(ours._fields[:len(theirs._fields)])
    assert fields == theirs._fields, (
        f"{name}: gradtx's fields {ours._fields} do not start with Optax's "
        f"{theirs._fields}")
  elif getattr(theirs, "_is_protocol", False) or not callable(theirs):
    pass  # typing aliases and protocols: the name is what scripts use
  elif has_signature(theirs):
    assert callable(ours) and has_signature(ours), f"{name} is not callable in gradtx"
    assert signature_differences(theirs, ours) == [], name


def missing_names():
  missing = {}
  for ns in NAMESPACES:
    missing[ns] = public_names(namespace(optax, ns)) - public_names(namespace(gtx, ns))
  return missing


def test_every_optax_name_exists_in_gradtx():
  missing = {ns: sorted(names) for ns, names in missing_names().items() if names}
  assert missing == {}


# The checks above, on purpose-made signatures.


def test_signature_check_flags_renames_order_defaults_and_positional_additions():

  def theirs(a, b=1.0, *, c=None):
    del a, b, c

  def renamed(x, b=1.0, *, c=None):
    del x, b, c

  def other_default(a, b=2.0, *, c=None):
    del a, b, c

  def positional_addition(a, b=1.0, d=0, *, c=None):
    del a, b, c, d

  def keyword_addition(a, b=1.0, *, c=None, d=0):
    del a, b, c, d

  def defaulted(a=0.0, b=1.0, *, c=None):
    del a, b, c

  assert signature_differences(theirs, renamed)
  assert signature_differences(theirs, other_default)
  assert signature_differences(theirs, positional_addition)
  assert signature_differences(theirs, keyword_addition) == []
  assert signature_differences(theirs, defaulted) == []

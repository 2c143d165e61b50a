"""Reading and writing fields of optimizer states by name, and mapping over the copies
of the params a state holds.

Same signatures and behaviour as ``optax.tree_utils`` 0.2.8 (``tree_get``, ``tree_set``,
``tree_get_all_with_path``, ``tree_map_params``, ``NamedTupleKey``). A *key* names a
field of a NamedTuple, a key of a dict, or a NamedTuple's class name (which selects the
whole tuple). Paths are those of :func:`jax.tree_util.tree_leaves_with_path`, except
that a step into a NamedTuple's field is a :class:`NamedTupleKey`, which also names the
tuple's class, so two fields of one name in different states can be told apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax

PyTree = Any
KeyPath = tuple[Any, ...]
Filtering = Callable[[KeyPath, Any], bool]


@dataclasses.dataclass(frozen=True)
class NamedTupleKey:
  """A path entry for the field ``name`` of a NamedTuple of class ``tuple_name``.

  A ``filtering(path, value)`` given to :func:`tree_get_all_with_path`,
  :func:`tree_get` or :func:`tree_set` can test ``path[-1].tuple_name`` to pick the
  field of one kind of state.
  """

  tuple_name: str
  name: str

  def __str__(self):
    return f"{self.tuple_name}.{self.name}"


# --- nodes that have keys: NamedTuples and dicts ---------------------------------------


def _is_named_tuple(x: Any) -> bool:
  return isinstance(x, tuple) and hasattr(x, "_fields")


def _has_keys(node: Any, keys: tuple[Any, ...]) -> bool:
  """Whether ``node`` is a NamedTuple with one of ``keys`` as a field or as its class
  name, or a dict with one of ``keys``."""
  if _is_named_tuple(node):
    return type(node).__name__ in keys or any(key in node._fields for key in keys)
  return isinstance(node, dict) and any(key in node for key in keys)


def _children(path: KeyPath, node: Any) -> list[tuple[KeyPath, Any]]:
  """``(path, child)`` for each field of a NamedTuple or item of a dict."""
  if _is_named_tuple(node):
    name = type(node).__name__
    return [((*path, NamedTupleKey(name, field)), getattr(node, field))
            for field in node._fields]
  if isinstance(node, dict):
    return [((*path, jax.tree_util.DictKey(key)), value) for key, value in node.items()]
  raise ValueError(f"Subtree must be a dict or a NamedTuple. Got {type(node)}")


def _key_of(entry: Any) -> Any:
  """The plain key of a path entry made by :func:`_children`."""
  if isinstance(entry, NamedTupleKey):
    return entry.name
  if isinstance(entry.key, (str, int)):
    return entry.key
  raise KeyError("Hashable keys not supported")


def _leaves_with_path(tree: PyTree,
                      is_leaf: Callable[[Any], bool]) -> list[tuple[KeyPath, Any]]:
  """:func:`jax.tree_util.tree_leaves_with_path` (stopping where ``is_leaf``), with a
  :class:`NamedTupleKey` for each step into a NamedTuple's field."""
  out = []
  stop = lambda x: is_leaf(x) or _is_named_tuple(x)
  for path, node in jax.tree_util.tree_leaves_with_path(tree, is_leaf=stop):
    if is_leaf(node) or not _is_named_tuple(node):
      out.append((path, node))
      continue
    for child_path, child in _children(path, node):
      out += [((*child_path, *p), leaf) for p, leaf in _leaves_with_path(child, is_leaf)]
  return out


def _all_with_path(tree: PyTree, key: Any) -> list[tuple[KeyPath, Any]]:
  """Every value under ``key`` in ``tree``: first those in the outermost nodes having
  ``key``, in leaf order, then those nested inside those nodes (Optax's order)."""
  has_key = lambda node: _has_keys(node, (key,))
  nodes = [(path, node) for path, node in _leaves_with_path(tree, has_key)
           if has_key(node)]
  found = []
  for path, node in nodes:
    if _is_named_tuple(node) and type(node).__name__ == key:
      found.append((path, node))
    elif _is_named_tuple(node):
      found.append(((*path, NamedTupleKey(type(node).__name__, key)),
                    getattr(node, key)))
    else:
      found.append(((*path, jax.tree_util.DictKey(key)), node[key]))
  for path, node in nodes:
    for child_path, child in _children(path, node):
      found += [((*child_path, *p), value) for p, value in _all_with_path(child, key)]
  return found


# --- the public functions --------------------------------------------------------------


def tree_get_all_with_path(tree: PyTree, key: Any,
                           filtering: Optional[Filtering] = None
                           ) -> list[tuple[KeyPath, Any]]:
  """Every ``(path, value)`` in ``tree`` whose key (a NamedTuple field, a dict key or a
  NamedTuple's class name) is ``key`` and, if given, for which
  ``filtering(path, value)`` holds.

  >>> state = gtx.inject_hyperparams(gtx.sgd)(learning_rate=0.1).init(params)
  >>> [(jax.tree_util.keystr(p), v)
  ...  for p, v in tree_get_all_with_path(state, "learning_rate")]
  [("InjectHyperparamsState.hyperparams['learning_rate']", Array(0.1, ...))]
  """
  found = _all_with_path(tree, key)
  if filtering:
    found = [(path, value) for path, value in found if filtering(path, value)]
  return found


def tree_get(tree: PyTree, key: Any, default: Any = None,
             filtering: Optional[Filtering] = None) -> Any:
  """The one value in ``tree`` under ``key`` (see :func:`tree_get_all_with_path`), or
  ``default`` if there is none.

  Raises:
    KeyError: if several values match.
  """
  found = tree_get_all_with_path(tree, key, filtering=filtering)
  if len(found) > 1:
    raise KeyError(f"Found multiple values for '{key}' in {tree}.")
  return found[0][1] if found else default


def tree_set(tree: PyTree, filtering: Optional[Filtering] = None, /,
             **kwargs: Any) -> PyTree:
  """A copy of ``tree`` in which each value that :func:`tree_get_all_with_path` finds
  under a key of ``kwargs`` (with ``filtering``) is replaced by that key's value.

  >>> new_state = tree_set(state, count=jnp.asarray(5))

  Unlike Optax 0.2.8's, this also replaces a match nested below a node that has the key
  through a node that does not (e.g. ``ScaleByAdamState.count`` in the ``inner_state``
  tuple of an ``inject_hyperparams`` state, which has its own ``count``): Optax's finds
  that value but leaves it unchanged.

  Raises:
    KeyError: if some key of ``kwargs`` matches no value.
  """
  for key in kwargs:
    if not tree_get_all_with_path(tree, key, filtering):
      given = " given the filtering operation" if filtering else ""
      raise KeyError(f"Found no values matching '{key}'{given} in {tree}")

  keep = filtering or (lambda path, value: True)
  has_any_key = lambda node: _has_keys(node, tuple(kwargs))

  def rebuild(path, subtree):
    """``subtree`` with ``replace`` applied to its outermost nodes having a key."""
    treedef = jax.tree.structure(subtree, is_leaf=has_any_key)
    return treedef.unflatten(replace((*path, *p), node)
                             for p, node in _leaves_with_path(subtree, has_any_key))

  def replace(path, node):
    if not has_any_key(node):
      return node
    name = type(node).__name__
    if _is_named_tuple(node) and name in kwargs and keep(path, node):
      return kwargs[name]
    children = {}
    for child_path, child in _children(path, node):
      key = _key_of(child_path[-1])
      children[key] = (kwargs[key] if key in kwargs and keep(child_path, child)
                       else rebuild(child_path, child))
    return node._replace(**children) if _is_named_tuple(node) else children

  return rebuild((), tree)


@jax.tree_util.register_pytree_node_class
class _ParamsPlaceholder:
  """A pytree without leaves that stands for the params in ``initable.init``."""

  def tree_flatten(self):
    return (), None

  @classmethod
  def tree_unflatten(cls, aux, children):
    del aux, children
    return cls()


def tree_map_params(initable: Any, f: Callable[..., Any], state: PyTree, /, *rest: Any,
                    transform_non_params: Optional[Callable[..., Any]] = None,
                    is_leaf: Optional[Callable[[Any], bool]] = None) -> PyTree:
  """``f`` mapped over every copy of the params in ``state`` (leaf by leaf, with the
  matching leaves of each tree of ``rest``); ``transform_non_params`` (if given) applied
  to every other leaf of ``state``.

  ``initable`` is the transform that built ``state`` (anything with an ``init``) or its
  init function: it is called on a placeholder params tree to find where in the state
  the params-shaped trees are. ``is_leaf`` is passed to the :func:`jax.tree.map` over
  those trees.

  >>> specs = tree_map_params(tx, lambda _, spec: spec, state, param_specs,
  ...                         transform_non_params=lambda _: None)
  """
  init = initable.init if hasattr(initable, "init") else initable
  is_placeholder = lambda x: isinstance(x, _ParamsPlaceholder)

  def map_params(marker, value):
    if is_placeholder(marker):
      return jax.tree.map(f, value, *rest, is_leaf=is_leaf)
    return value if transform_non_params is None else transform_non_params(value)

  return jax.tree.map(map_params, init(_ParamsPlaceholder()), state,
                      is_leaf=is_placeholder)

"""gradtx.tree_utils and gradtx.tree against optax.tree_utils 0.2.8 (the oracle).

Every public name is run next to Optax's on the same small pytrees of mixed shapes
(scalar, vector, matrix, 3-D) in float32 and float64, and in complex64 (complex128 for
a few) where Optax supports complex leaves, eagerly; results must match in structure,
dtype and value, bit for bit except where noted (``tree_sum(...,
associative_reduction=True)``, whose order Optax leaves to JAX, and trees over
``STACK_ABOVE`` leaves, whose reductions gradtx stacks, see
``gradtx/_src/tree/math.py``). The state functions are checked on real gradtx states
and on a hand-made tree against Optax's functions run on the same trees; ``tree_set``
also against an oracle built on ``tree_get_all_with_path``, because it deliberately
replaces a few nested values Optax's leaves alone (``OPTAX_SET_MISSES``).
"""

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
import pytest

import gradtx as gtx
import gradtx.tree
import gradtx.tree_utils as gtu
from conftest import make_params
from gradtx._src.tree import math as tree_math

REAL = ["float32", "float64"]
ALL = REAL + ["complex64"]


def x64(dtype):
  return jax.enable_x64(dtype in ("float64", "complex128"))


def tree(dtype, seed=0):
  """``conftest.make_params`` (scalar, vector, 4x3 matrix, 2x3x4 cube) in ``dtype``;
  complex dtypes get an independent imaginary part."""
  dtype = jnp.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.complexfloating):
    return make_params(dtype, seed)
  real = jnp.finfo(dtype).dtype
  return jax.tree.map(lambda a, b: (a + 1j * b).astype(dtype),
                      make_params(real, seed), make_params(real, seed + 100))


def assert_same(ours, theirs, rtol=0.0):
  """Same structure, and each leaf the same shape, dtype and value (bit for bit when
  ``rtol`` is 0; NaNs equal)."""
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    if rtol:
      np.testing.assert_allclose(a, b, rtol=rtol, atol=0)
    else:
      np.testing.assert_array_equal(a, b)


# --- elementwise functions and reductions, side by side -------------------------------

# name -> (function of (x, y, lib) calling the function of ``lib``, dtypes to run it in:
# REAL, or ALL where Optax supports complex leaves; C128 adds complex128 where complex
# leaves take a path of their own; F32 for a variant of a case run in every dtype).
C128 = ALL + ["complex128"]
F32 = ["float32"]
CASES = {
    "add": (lambda x, y, t: t.tree_add(x, y, x), ALL),
    "sub": (lambda x, y, t: t.tree_sub(x, y), ALL),
    "mul": (lambda x, y, t: t.tree_mul(x, y), ALL),
    "div": (lambda x, y, t: t.tree_div(x, y), ALL),
    "scale": (lambda x, y, t: t.tree_scale(0.3, x), ALL),
    "add_scale": (lambda x, y, t: t.tree_add_scale(x, jnp.asarray(2.5), y), ALL),
    "where": (lambda x, y, t: t.tree_where(jnp.asarray(False), x, y), ALL),
    "clip": (lambda x, y, t: t.tree_clip(x, -0.5, 0.7), REAL),
    "clip_max": (lambda x, y, t: t.tree_clip(x, max_value=-0.2), F32),
    "conj": (lambda x, y, t: t.tree_conj(x), ALL),
    "real": (lambda x, y, t: t.tree_real(x), ALL),
    "zeros_like": (lambda x, y, t: t.tree_zeros_like(x), ALL),
    "ones_like_bool": (lambda x, y, t: t.tree_ones_like(x, jnp.bool_), ALL),
    "full_like": (lambda x, y, t: t.tree_full_like(x, 0.25), ALL),
    "full_like_dtype": (lambda x, y, t: t.tree_full_like(x, 3, jnp.float16), F32),
    "full_like_nan": (lambda x, y, t: t.tree_full_like(x, jnp.nan), F32),
    "batch_shape": (lambda x, y, t: t.tree_batch_shape(x, (2, 3)), ALL),
    "update_moment": (lambda x, y, t: t.tree_update_moment(x, y, 0.999, 2), ALL),
    "update_moment_array": (
        lambda x, y, t: t.tree_update_moment(x, y, jnp.asarray(0.8), 3), F32),
    "update_infinity_moment": (
        lambda x, y, t: t.tree_update_infinity_moment(x, y, 0.9, 1e-8), REAL),
    "update_moment_per_elem_norm": (
        lambda x, y, t: t.tree_update_moment_per_elem_norm(x, y, 0.9, 2), C128),
    "update_moment_per_elem_norm_3": (
        lambda x, y, t: t.tree_update_moment_per_elem_norm(x, y, 0.9, 3),
        ["float32", "complex64"]),
    "update_moment_per_elem_norm_1.5": (
        lambda x, y, t: t.tree_update_moment_per_elem_norm(x, y, 0.5, 1.5), F32),
    "bias_correction": (lambda x, y, t: t.tree_bias_correction(x, 0.9, jnp.asarray(3)),
                        ALL),
    "bias_correction_array": (
        lambda x, y, t: t.tree_bias_correction(x, jnp.asarray(0.999), jnp.asarray(7)),
        F32),
    "cast": (lambda x, y, t: t.tree_cast(x, jnp.float16), REAL),
    "cast_complex": (lambda x, y, t: t.tree_cast(x, jnp.complex64), ALL),
    "cast_none": (lambda x, y, t: t.tree_cast(x, None), F32),
    "cast_like": (
        lambda x, y, t: t.tree_cast_like(x, {"scalar": jnp.int8(1), "vector": 2.0,
                                             "nested": {"matrix": jnp.float16(1),
                                                        "cube": jnp.ones(2, bool)}}),
        ALL),
    "vdot": (lambda x, y, t: t.tree_vdot(x, y), C128),
    "sum": (lambda x, y, t: t.tree_sum(x), ALL),
    "max": (lambda x, y, t: t.tree_max(x), REAL),
    "min": (lambda x, y, t: t.tree_min(x), REAL),
    "size": (lambda x, y, t: t.tree_size(x), ALL),
    "norm": (lambda x, y, t: t.tree_norm(x), C128),
    "norm_2_squared": (lambda x, y, t: t.tree_norm(x, 2, squared=True), F32),
    "norm_1": (lambda x, y, t: t.tree_norm(x, ord=1), ALL),
    "norm_1_squared": (lambda x, y, t: t.tree_norm(x, ord=1, squared=True), F32),
    "norm_inf": (lambda x, y, t: t.tree_norm(x, ord=jnp.inf), ALL),
    "norm_inf_str": (lambda x, y, t: t.tree_norm(x, ord="infinity", squared=True), F32),
    "allclose": (lambda x, y, t: (t.tree_allclose(x, x), t.tree_allclose(x, y)), ALL),
    "allclose_tol": (lambda x, y, t: t.tree_allclose(x, t.tree_add_scale(x, 1e-3, y),
                                                     rtol=0, atol=1e-2), F32),
}


@pytest.mark.parametrize("case, dtype", [(case, dtype) for case, (_, dtypes)
                                         in CASES.items() for dtype in dtypes])
def test_matches_optax(case, dtype):
  with x64(dtype), warnings.catch_warnings():
    warnings.simplefilter("ignore")  # casts from complex to real warn in both
    x, y = tree(dtype, 0), tree(dtype, 1)
    fn = CASES[case][0]
    assert_same(fn(x, y, gtu), fn(x, y, otu))


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64"])
def test_cast_casts_every_leaf_like_optax(dtype):
  """Optax's tree_cast casts integer and boolean leaves as well."""
  with x64(dtype), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    t = {"f": tree(dtype)["vector"], "i": jnp.arange(3), "b": jnp.array([True, False]),
         "c": jnp.array([1 + 2j, 3j])}
    out = gtu.tree_cast(t, dtype)
    assert_same(out, otu.tree_cast(t, dtype))
    assert {str(x.dtype) for x in jax.tree.leaves(out)} == {dtype}


@pytest.mark.parametrize("dtype", REAL)
def test_reductions_of_empty_and_odd_leaves(dtype):
  with x64(dtype):
    t = {"empty": jnp.zeros((0,), dtype), "v": tree(dtype)["vector"], "s": jnp.asarray(2)}
    for name in ["tree_max", "tree_min", "tree_sum", "tree_size"]:
      assert_same(getattr(gtu, name)(t), getattr(otu, name)(t))
    for ord_ in [None, 1, jnp.inf]:
      assert_same(gtu.tree_norm(t, ord_), otu.tree_norm(t, ord_))
    for t in [{}, {"empty": jnp.zeros((0, 2), dtype)}]:
      for name in ["tree_max", "tree_min", "tree_sum", "tree_size"]:
        assert_same(getattr(gtu, name)(t), getattr(otu, name)(t))
      assert_same(gtu.tree_norm(t), otu.tree_norm(t))
      assert_same(gtu.tree_vdot(t, t), otu.tree_vdot(t, t))


@pytest.mark.parametrize("dtype", REAL)
def test_none_leaves_in_moments_and_add_scale(dtype):
  with x64(dtype):
    x, y = tree(dtype, 0), tree(dtype, 1)
    x = {**x, "vector": None}
    for name, args in [("tree_update_moment", (0.9, 2)),
                       ("tree_update_infinity_moment", (0.9, 1e-8)),
                       ("tree_update_moment_per_elem_norm", (0.9, 2))]:
      assert_same(getattr(gtu, name)(x, y, *args), getattr(otu, name)(x, y, *args))
    assert_same(gtu.tree_add_scale(x, 0.5, y), otu.tree_add_scale(x, 0.5, y))


def test_l2_norm_is_optax_norm():
  t = tree("float32")
  assert_same(gtu.tree_l2_norm(t), otu.tree_norm(t, ord=2))
  assert_same(gtu.tree_l2_norm(t, squared=True), otu.tree_norm(t, ord=2, squared=True))


def test_associative_sum_and_stacked_reductions_agree_to_rounding():
  """Orders Optax does not fix (associative_reduction) or gradtx changes on purpose
  (more than STACK_ABOVE leaves): equal up to rounding, in float64."""
  dtype, rtol = "float64", 1e-14
  with x64(dtype):
    t = tree(dtype)
    assert_same(gtu.tree_sum(t, associative_reduction=True),
                otu.tree_sum(t, associative_reduction=True), rtol)
    rng = np.random.default_rng(0)
    big = [jnp.asarray(rng.normal(size=(i % 2 + 1, 3)), dtype)
           for i in range(tree_math.STACK_ABOVE + 1)]
    other = [2 * x + 1 for x in big]
    assert_same(gtu.tree_sum(big), otu.tree_sum(big), rtol)
    assert_same(gtu.tree_vdot(big, other), otu.tree_vdot(big, other), rtol)
    for ord_ in [None, 1, jnp.inf]:
      assert_same(gtu.tree_norm(big, ord_), otu.tree_norm(big, ord_), rtol)


# --- tree_dtype ------------------------------------------------------------------------

DTYPE_TREES = {
    "uniform_f32": {"a": jnp.ones(2), "b": {"c": jnp.zeros((2, 3))}},
    "f16_f32": {"a": jnp.ones(2, jnp.float16), "b": jnp.ones(3, jnp.float32)},
    "i8_f16_bool": [jnp.ones(2, jnp.int8), jnp.ones(3, jnp.float16), jnp.array(True)],
    "i32_u32": {"a": jnp.ones(2, jnp.int32), "c": jnp.ones(2, jnp.uint32)},
    "bf16_f16": [jnp.ones(2, jnp.bfloat16), jnp.ones(2, jnp.float16)],
    "python_scalars": {"a": 1.0, "b": 2},
    "complex": [jnp.ones(2, jnp.complex64), jnp.ones(2, jnp.float32)],
    "empty": {},
}


@pytest.mark.parametrize("handler", [None, "promote", "highest", "lowest", "bogus"])
@pytest.mark.parametrize("name", DTYPE_TREES)
@pytest.mark.parametrize("x64_on", [False, True])
def test_tree_dtype_matches_optax(name, handler, x64_on):
  with jax.enable_x64(x64_on):
    t = DTYPE_TREES[name]
    try:
      expected = otu.tree_dtype(t, handler)
    except ValueError as e:
      with pytest.raises(ValueError) as ours:
        gtu.tree_dtype(t, handler)
      assert str(ours.value) == str(e)
      return
    assert gtu.tree_dtype(t, handler) == expected


# --- tree_get, tree_set, tree_get_all_with_path ----------------------------------------


def plain(found):
  """``tree_get_all_with_path``'s result with each path entry as ``(kind, fields)``, so
  that gradtx's and Optax's NamedTupleKey compare equal."""
  def entry(k):
    if type(k).__name__ == "NamedTupleKey":
      return ("NamedTupleKey", k.tuple_name, k.name)
    return (type(k).__name__, str(k))
  return [(tuple(entry(k) for k in path), value) for path, value in found]


def assert_found_same(ours, theirs):
  assert [p for p, _ in plain(ours)] == [p for p, _ in plain(theirs)]
  for (_, a), (_, b) in zip(ours, theirs):
    assert_same(a, b)


class Inner(NamedTuple):
  lr: jax.Array
  count: jax.Array


class Outer(NamedTuple):
  count: jax.Array
  hyper: dict
  inner: tuple


def tricky_tree():
  """Keys at several depths, in dicts, NamedTuples and lists, a dict key that is a
  NamedTuple's class name, a value under ``lr`` that itself holds ``lr``, int keys, and a
  match below a plain dict below a match (which Optax's tree_set leaves alone)."""
  return Outer(
      count=jnp.asarray(1),
      hyper={"lr": {"lr": jnp.asarray(0.5), "b": jnp.asarray(2.0)},
             "ints": {3: jnp.ones(2), 4: jnp.zeros(1)}, "Inner": jnp.asarray(9.0),
             "deep": {"x": {"b": jnp.asarray(-3.0)}}},
      inner=(Inner(lr=jnp.asarray(0.1), count=jnp.asarray(4)),
             [Inner(lr=jnp.zeros(3), count=jnp.asarray(5)), {"lr": jnp.asarray(7.0)}],
             None, gtx.EmptyState()))


def gtx_states():
  params = make_params()
  return {
      "inject_adam": gtx.inject_hyperparams(gtx.adam)(learning_rate=0.1).init(params),
      "chain_clip_adam": gtx.chain(gtx.clip(1.0), gtx.adam(0.1)).init(params),
      "tricky": tricky_tree(),
  }


KEYS = ["learning_rate", "count", "mu", "nu", "lr", "b", 3, "Inner", "Outer",
        "ScaleByAdamState", "InjectHyperparamsState", "hyperparams", "missing"]
FILTERS = {
    None: None,
    "arrays": lambda path, value: isinstance(value, jax.Array),
    "in_adam": lambda path, value: bool(path) and getattr(path[-1], "tuple_name",
                                                          None) == "ScaleByAdamState",
    "scalar": lambda path, value: jnp.ndim(value) == 0 if isinstance(value, jax.Array)
              else False,
}


@pytest.mark.parametrize("filtering", FILTERS)
@pytest.mark.parametrize("state", ["inject_adam", "chain_clip_adam", "tricky"])
def test_get_all_with_path_and_get_match_optax(state, filtering):
  s, filt = gtx_states()[state], FILTERS[filtering]
  for key in KEYS:
    assert_found_same(gtu.tree_get_all_with_path(s, key, filt),
                      otu.tree_get_all_with_path(s, key, filt))
    try:
      expected = otu.tree_get(s, key, "default", filt)
    except KeyError as e:
      with pytest.raises(KeyError) as ours:
        gtu.tree_get(s, key, "default", filt)
      assert str(ours.value) == str(e)
      continue
    ours = gtu.tree_get(s, key, "default", filtering=filt)
    if isinstance(expected, str):
      assert ours == expected
    else:
      assert_same(ours, expected)


def test_get_and_set_on_inject_hyperparams_state():
  params = make_params()
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.1)
  state = tx.init(params)
  lr = gtu.tree_get(state, "learning_rate")
  np.testing.assert_allclose(lr, 0.1)
  (path, _), = gtu.tree_get_all_with_path(state, "learning_rate")
  assert jax.tree_util.keystr(path) == (
      "InjectHyperparamsState.hyperparams['learning_rate']")
  new = gtu.tree_set(state, learning_rate=jnp.asarray(0.01))
  assert float(gtu.tree_get(new, "learning_rate")) == pytest.approx(0.01)
  assert jax.tree.structure(new) == jax.tree.structure(state)
  # the new rate is used by the next update, as after optax's tree_set
  grads = jax.tree.map(jnp.ones_like, params)
  u_new, _ = tx.update(grads, new, params)
  u_old, _ = tx.update(grads, state, params)
  assert_same(jax.tree.map(lambda a: 10 * a, u_new), u_old, rtol=1e-6)
  # count is in InjectHyperparamsState and in ScaleByAdamState: ambiguous
  with pytest.raises(KeyError, match="multiple"):
    gtu.tree_get(state, "count")
  in_adam = lambda path, _: path[-1].tuple_name == "ScaleByAdamState"
  assert int(gtu.tree_get(state, "count", filtering=in_adam)) == 0
  bumped = gtu.tree_set(state, in_adam, count=jnp.asarray(5))
  assert int(gtu.tree_get(bumped, "count", filtering=in_adam)) == 5
  assert int(bumped.count) == 0


def test_get_and_set_on_chain_state():
  params = make_params()
  state = gtx.chain(gtx.clip(1.0), gtx.adam(0.1)).init(params)
  adam_state = gtu.tree_get(state, "ScaleByAdamState")
  assert type(adam_state).__name__ == "ScaleByAdamState"
  assert_same(gtu.tree_get(state, "mu"), adam_state.mu)
  ones = jax.tree.map(jnp.ones_like, params)
  new = gtu.tree_set(state, mu=ones)
  assert_same(gtu.tree_get(new, "mu"), ones)
  assert_same(gtu.tree_get(new, "nu"), adam_state.nu)
  assert jax.tree.structure(new) == jax.tree.structure(state)
  with pytest.raises(KeyError, match="Found no values matching 'missing'"):
    gtu.tree_set(state, missing=1)
  with pytest.raises(KeyError, match="given the filtering operation"):
    gtu.tree_set(state, lambda path, value: False, mu=ones)


SETS = [
    (None, {"count": 7}),
    (None, {"lr": -1.0}),
    (None, {"lr": -1.0, "count": 0}),
    (None, {"Inner": "replaced"}),
    (None, {"Outer": "whole"}),
    (None, {"b": 3.0}),
    ("arrays", {"lr": -1.0}),
    ("scalar", {"lr": -2.0, "count": 9}),
    ("in_adam", {"count": 11}),
    (None, {"hyperparams": {"x": 1}}),
    (None, {"mu": 0.0, "nu": 1.0}),
    (None, {"ScaleByAdamState": "adam"}),
    (None, {"learning_rate": 0.5}),
    (None, {"missing": 1}),
    (None, {"lr": -1.0, "b": 3.0}),
]

# (state, index in SETS) where Optax 0.2.8's tree_set finds a value but leaves it as it
# is: below a node having the key, through a node (plain tuple, list or dict) that does
# not have it. gradtx's replaces every value tree_get_all_with_path finds.
OPTAX_SET_MISSES = {("inject_adam", 0), ("inject_adam", 8), ("tricky", 0), ("tricky", 2),
                    ("tricky", 7), ("tricky", 14)}


def at(tree, path):
  """The value at a path of tree_get_all_with_path."""
  for k in path:
    if isinstance(k, gtu.NamedTupleKey):
      tree = getattr(tree, k.name)
    elif isinstance(k, jax.tree_util.DictKey):
      tree = tree[k.key]
    else:
      tree = tree[k.idx]
  return tree


def set_at(tree, path, value):
  """A copy of ``tree`` with ``value`` at ``path``."""
  if not path:
    return value
  k, rest = path[0], path[1:]
  if isinstance(k, gtu.NamedTupleKey):
    return tree._replace(**{k.name: set_at(getattr(tree, k.name), rest, value)})
  if isinstance(k, jax.tree_util.DictKey):
    return {**tree, k.key: set_at(tree[k.key], rest, value)}
  items = list(tree)
  items[k.idx] = set_at(items[k.idx], rest, value)
  return type(tree)(items)


def set_oracle(tree, filtering, **kwargs):
  """Every value tree_get_all_with_path finds replaced, innermost first."""
  targets = [(path, kwargs[key]) for key in kwargs
             for path, _ in gtu.tree_get_all_with_path(tree, key, filtering)]
  for path, value in sorted(targets, key=lambda t: -len(t[0])):
    tree = set_at(tree, path, value)
  return tree


def same(a, b):
  try:
    assert_same(a, b)
    return True
  except AssertionError:
    return False


@pytest.mark.parametrize("state", ["inject_adam", "chain_clip_adam", "tricky"])
def test_set_matches_optax(state):
  s = gtx_states()[state]
  misses = set()
  for i, (filtering, kwargs) in enumerate(SETS):
    filt = FILTERS[filtering]
    args = (filt,) if filt else ()
    try:
      expected = otu.tree_set(s, *args, **kwargs)
    except KeyError as e:
      with pytest.raises(KeyError) as ours:
        gtu.tree_set(s, *args, **kwargs)
      assert str(ours.value) == str(e)
      continue
    ours = gtu.tree_set(s, *args, **kwargs)
    assert_same(ours, set_oracle(s, filt, **kwargs))
    if not same(ours, expected):
      misses.add((state, i))
  assert misses == {m for m in OPTAX_SET_MISSES if m[0] == state}


def test_named_tuple_key():
  key = gtu.NamedTupleKey("ScaleByAdamState", "mu")
  assert str(key) == "ScaleByAdamState.mu" == str(otu.NamedTupleKey("ScaleByAdamState",
                                                                    "mu"))
  assert key == gtu.NamedTupleKey("ScaleByAdamState", "mu") and hash(key) == hash(
      gtu.NamedTupleKey("ScaleByAdamState", "mu"))
  with pytest.raises(AttributeError):
    key.name = "nu"


# --- tree_map_params ------------------------------------------------------------------


TRANSFORMS = {
    "adam": lambda: gtx.adam(0.1),
    "chain_clip_adam": lambda: gtx.chain(gtx.clip(1.0), gtx.adam(0.1)),
    "inject_adam": lambda: gtx.inject_hyperparams(gtx.adam)(learning_rate=0.1),
    "sgd_momentum": lambda: gtx.sgd(0.1, momentum=0.9),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_map_params_matches_optax(name):
  """Optax's tree_map_params run on the same gradtx transform is the oracle."""
  tx = TRANSFORMS[name]()
  params = make_params()
  state = tx.init(params)
  specs = jax.tree.map(lambda p: f"spec{p.ndim}", params)
  for args, kwargs in [
      ((lambda p: p + 1,), {}),
      ((lambda p, s: s, specs), {"transform_non_params": lambda _: None}),
      ((lambda p: p.shape,), {"transform_non_params": lambda v: ("other", v.dtype)}),
  ]:
    for initable in [tx, tx.init]:
      ours = gtu.tree_map_params(initable, args[0], state, *args[1:], **kwargs)
      theirs = otu.tree_map_params(initable, args[0], state, *args[1:], **kwargs)
      assert jax.tree.structure(ours) == jax.tree.structure(theirs)
      for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        if isinstance(a, jax.Array):
          assert_same(a, b)
        else:
          assert a == b


def test_map_params_replaces_params_copies_only():
  params = make_params()
  state = gtx.chain(gtx.clip(1.0), gtx.adam(0.1)).init(params)
  specs = gtu.tree_map_params(gtx.chain(gtx.clip(1.0), gtx.adam(0.1)),
                              lambda p: "P", state,
                              transform_non_params=lambda _: "other")
  adam = gtu.tree_get(specs, "ScaleByAdamState")
  assert jax.tree.leaves(adam.mu) == ["P"] * 4 == jax.tree.leaves(adam.nu)
  assert adam.count == "other"


def test_map_params_is_leaf():
  params = {"a": (jnp.ones(2), jnp.zeros(2)), "b": (jnp.ones(3), jnp.ones(3))}
  tx = gtx.sgd(0.1, momentum=0.9)
  state = tx.init(params)
  is_pair = lambda x: isinstance(x, tuple) and len(x) == 2 and not hasattr(x, "_fields")
  f = lambda pair: pair[0] + pair[1]
  ours = gtu.tree_map_params(tx, f, state, is_leaf=is_pair)
  assert_same(ours, otu.tree_map_params(tx, f, state, is_leaf=is_pair))


# --- random trees ---------------------------------------------------------------------


RNG_KEYS = {"typed": lambda: jax.random.key(42), "raw": lambda: jax.random.PRNGKey(42)}


@pytest.mark.parametrize("key", RNG_KEYS)
def test_split_key_like_matches_optax(key):
  k, t = RNG_KEYS[key](), make_params()
  assert_same(gtu.tree_unwrap_random_key_data(gtu.tree_split_key_like(k, t)),
              otu.tree_unwrap_random_key_data(otu.tree_split_key_like(k, t)))


def random_target(dtype):
  """Leaves of two shapes (each compiles a sampler), nested in a dict and a list."""
  return {"s": jnp.zeros((), dtype), "m": jnp.zeros((2, 3), dtype),
          "l": [jnp.zeros((2, 3), dtype), jnp.zeros((), dtype), jnp.zeros((2, 3), dtype)]}


# (key kind, sampler, out dtype, tree dtype)
RANDOM = {
    "normal": ("typed", jax.random.normal, None, "float32"),
    "normal_raw_key_f64": ("raw", jax.random.normal, None, "float64"),
    "normal_as_f16": ("typed", jax.random.normal, jnp.float16, "float32"),
    "no_out_sharding": ("raw", lambda k, shape, dtype: jax.random.uniform(
        k, shape, dtype, -2, 2), None, "float32"),
    "rademacher_int": ("typed", jax.random.rademacher, jnp.int32, "float64"),
}


@pytest.mark.parametrize("case", RANDOM)
def test_random_like_matches_optax(case):
  key, fn, out_dtype, dtype = RANDOM[case]
  with x64(dtype):
    k, t = RNG_KEYS[key](), random_target(dtype)
    ours = gtu.tree_random_like(k, t, fn, out_dtype)
    assert_same(ours, otu.tree_random_like(k, t, fn, out_dtype))
    if case == "normal":
      assert_same(gtu.tree_random_like(k, t), ours)


def test_unwrap_random_key_data_matches_optax():
  t = {"typed": jax.random.key(1), "typed_batch": jax.random.split(jax.random.key(2), 3),
       "raw": jax.random.PRNGKey(3), "x": jnp.ones(2), "n": 1.5}
  ours = gtu.tree_unwrap_random_key_data(t)
  assert_same(ours, otu.tree_unwrap_random_key_data(t))
  assert ours["raw"] is t["raw"] and ours["x"] is t["x"]


# --- the public modules ---------------------------------------------------------------


def optax_public(module):
  return {n for n in dir(module) if not n.startswith("_")
          and not type(getattr(module, n)).__name__ == "module"}


def test_tree_utils_names_are_optax_names():
  assert optax_public(otu) - set(dir(gtu)) == set()
  assert set(gtu.__all__) == optax_public(otu) | {"tree_l2_norm"}
  assert all(hasattr(gtu, n) for n in gtu.__all__)


def test_tree_names_are_optax_tree_names():
  assert set(gradtx.tree.__all__) == optax_public(optax.tree)
  for short in gradtx.tree.__all__:
    assert getattr(gradtx.tree, short) is getattr(gtu, "tree_" + short)


def test_no_optax_import():
  """The public modules import nothing from Optax."""
  import inspect
  for module in [gtu, gradtx.tree]:
    for name in module.__all__:
      assert getattr(module, name).__module__.startswith("gradtx"), name
  for module in ["state", "random", "casting", "math"]:
    source = inspect.getsource(__import__(f"gradtx._src.tree.{module}",
                                          fromlist=["_"]))
    assert "import optax" not in source and "from optax" not in source

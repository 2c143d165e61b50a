"""The protocol's names and their interplay with Optax's own combinators.

* gradtx transforms inside ``optax.chain`` (and Optax's other combinators) receive the
  extra arguments (``value=``, ``grad=``, ``value_fn=``): a gradtx transform reports
  ``optax.GradientTransformationExtraArgs`` as its class once Optax is imported, which is
  what Optax checks. Oracle: the same transform in ``gtx.chain``, or Optax's own
  transform of the same name in ``optax.chain``, step by step.
* ``GradientTransformationExtraArgs``, ``with_extra_args_support``, ``stateless``,
  ``stateless_with_tree_map``, ``incremental_update``, ``periodic_update``: against
  Optax's functions of the same name.
* The contract fixes of this module's constructors: ``scale(step_size=)``,
  ``stateless(f=)``, ``nadam(nesterov=)``, Optax's state of ``add_decayed_weights``.
"""

import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import ROOT, loss, make_params
from oracles import assert_trajectories_close, trajectory

STEPS = 30


def run(tx, params, steps=STEPS, with_loss=False):
  """Params after each jitted step; with ``with_loss`` the update gets ``value=``,
  ``grad=`` and ``value_fn=`` as Optax's line searches and plateau schedules need."""

  @jax.jit
  def step(params, state):
    value, grad = jax.value_and_grad(loss)(params)
    extras = dict(value=value, grad=grad, value_fn=loss) if with_loss else {}
    updates, state = tx.update(grad, state, params, **extras)
    return optax.apply_updates(params, updates), state

  state, path = tx.init(params), []
  for _ in range(steps):
    params, state = step(params, state)
    path.append(params)
  return path


# --- Optax's combinators pass extra arguments to gradtx members ---------------------------


def test_a_gradtx_transform_is_an_optax_extra_args_transform():
  tx = gtx.reduce_on_plateau()
  assert type(tx) is gtx.GradientTransformation
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  assert isinstance(tx, optax.GradientTransformation)
  assert optax.with_extra_args_support(tx) is tx


def test_reduce_on_plateau_inside_optax_chain_gets_the_loss():
  """patience=2, atol=1e3: only the first loss counts as an improvement, so the scale
  halves every other step; without value= the update would raise."""
  params = make_params()

  def make(m, plateau):
    return m.chain(m.adam(0.05), plateau(factor=0.5, patience=2, atol=1e3))

  theirs = run(make(optax, optax.contrib.reduce_on_plateau), params, with_loss=True)
  for ours in (make(optax, gtx.reduce_on_plateau), make(gtx, gtx.reduce_on_plateau)):
    assert_trajectories_close(run(ours, params, with_loss=True), theirs)


def test_a_line_search_inside_optax_chain_gets_value_grad_and_value_fn():
  params = make_params()

  def make(m):
    return m.chain(gtx.scale(-1.0), gtx.scale_by_backtracking_linesearch(10, store_grad=True))

  assert_trajectories_close(run(make(optax), params, steps=10, with_loss=True),
                            run(make(gtx), params, steps=10, with_loss=True))


def test_a_transform_without_extra_args_is_still_shielded_by_optax():
  """A user's ``update`` without ``**extra_args`` keeps its own class, so Optax drops
  the extras for it instead of passing them (and failing)."""

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: -u, updates), state

  tx = gtx.GradientTransformation(gtx.init_empty_state, update)
  assert tx.__class__ is gtx.GradientTransformation
  assert not isinstance(tx, optax.GradientTransformationExtraArgs)
  chained = optax.chain(tx)
  params = make_params()
  updates, _ = chained.update(params, chained.init(params), value=1.0)
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    np.testing.assert_array_equal(u, -p)


def test_gradtx_never_imports_optax_and_then_reports_its_own_class():
  code = ("import sys, gradtx as gtx; tx = gtx.adam(0.1); "
          "assert 'optax' not in sys.modules, 'gradtx imported optax'; "
          "assert tx.__class__ is type(tx), tx.__class__; "
          "assert isinstance(tx, gtx.GradientTransformationExtraArgs)")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=False)
  assert result.returncode == 0, result.stderr


def _negate(updates, state, params=None, **extra_args):
  del params, extra_args
  return jax.tree.map(lambda u: -u, updates), state


def test_transforms_pickle_and_repr_as_their_own_class():
  tx = gtx.GradientTransformation(gtx.init_empty_state, _negate)
  assert tx.__class__ is optax.GradientTransformationExtraArgs  # Optax is imported here
  restored = pickle.loads(pickle.dumps(tx))
  assert type(restored) is gtx.GradientTransformation and restored == tx
  assert repr(tx).startswith("GradientTransformation(init=")


# --- GradientTransformationExtraArgs and with_extra_args_support -------------------------


def test_extra_args_class_and_isinstance():
  tx = gtx.GradientTransformationExtraArgs(gtx.init_empty_state, _negate)
  assert isinstance(tx, gtx.GradientTransformation)
  assert tx._fields == optax.GradientTransformationExtraArgs._fields
  # Every gradtx transform takes extra arguments; a plain Optax one does not.
  assert isinstance(gtx.chain(gtx.adam(0.1)), gtx.GradientTransformationExtraArgs)
  assert isinstance(optax.chain(optax.adam(0.1)), gtx.GradientTransformationExtraArgs)
  assert not isinstance(optax.identity(), gtx.GradientTransformationExtraArgs)
  assert not isinstance(0.1, gtx.GradientTransformationExtraArgs)


def test_with_extra_args_support_wraps_only_transforms_without_them():
  tx = gtx.adam(0.1)
  assert gtx.with_extra_args_support(tx) is tx
  wrapped = gtx.with_extra_args_support(optax.sgd(0.1))
  assert isinstance(wrapped, gtx.GradientTransformationExtraArgs)
  params = make_params()
  updates, _ = wrapped.update(params, wrapped.init(params), params, value=1.0, other=2)
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    np.testing.assert_allclose(u, -0.1 * p, rtol=1e-7)


# --- stateless, stateless_with_tree_map, incremental_update, periodic_update -------------


@pytest.mark.parametrize("with_params", [True, False], ids=["params", "no_params"])
def test_stateless_transforms_match_optax(with_params):
  params = make_params()
  grads = jax.grad(loss)(params)
  p = params if with_params else None

  def f_tree(u, p):
    return jax.tree.map(lambda g: 0.5 * g, u) if p is None else jax.tree.map(
        lambda g, x: g + 0.1 * x, u, p)

  def f_leaf(u, p):
    return 0.5 * u if p is None else u + 0.1 * p

  pairs = [(gtx.stateless(f=f_tree), optax.stateless(f=f_tree)),
           (gtx.stateless_with_tree_map(f_leaf), optax.stateless_with_tree_map(f_leaf))]
  for ours, theirs in pairs:
    a, state_a = ours.update(grads, ours.init(params), p)
    b, state_b = theirs.update(grads, theirs.init(params), p)
    assert state_a == gtx.EmptyState() and state_b == optax.EmptyState()
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_incremental_and_periodic_update_match_optax():
  new, old = make_params(seed=1), make_params(seed=2)
  for step_size in (0.0, 0.25, jnp.float32(0.9)):
    jax.tree.map(np.testing.assert_array_equal, gtx.incremental_update(new, old, step_size),
                 optax.incremental_update(new, old, step_size))
  for steps in (0, 3, 4, 8):
    jax.tree.map(np.testing.assert_array_equal, gtx.periodic_update(new, old, steps, 4),
                 optax.periodic_update(new, old, steps, 4))


# --- the contract fixes: scale(step_size), nadam(nesterov), add_decayed_weights ----------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scale_step_size_and_nadam_nesterov_match_optax(dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    for make in (lambda m: m.chain(m.scale_by_adam(), m.scale(step_size=-0.02)),
                 lambda m: m.nadam(0.02, nesterov=False),
                 lambda m: m.nadam(0.02, b1=0.8, nesterov=True)):
      assert_trajectories_close(trajectory(make(gtx), params, STEPS),
                                trajectory(make(optax), params, STEPS), dtype)


def test_add_decayed_weights_states_are_optaxs():
  params = make_params()
  assert gtx.AddDecayedWeightsState is gtx.EmptyState
  assert gtx.ScaleState is gtx.EmptyState
  for weight_decay in (0.1, lambda count: 0.1 * 0.9**count):
    ours = gtx.add_decayed_weights(weight_decay).init(params)
    theirs = optax.add_decayed_weights(weight_decay).init(params)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours._fields == theirs._fields

"""Checkpoint and resume with Orbax: a resumed run is the uninterrupted run, bit for bit.

examples/checkpoint_resume.py trains a Flax model with a gradtx optimizer that keeps
every kind of state (an injected schedule's step count and hyperparameters, Lookahead's
slow weights and sync position, apply_if_finite's counters), saves a checkpoint right
after a step with NaN gradients, restores it in a NEW Python process and trains on. The
oracle is the same script's uninterrupted run: params and optimizer state must have the
same bits and dtypes in every leaf.
"""

import jax
import numpy as np
import pytest

import gradtx as gtx
from conftest import load_script

# One worker runs every test of this module (--dist loadgroup), so the session-scoped
# fixture below (a subprocess or example run of 10-25 s) runs once per test run, not
# once per worker.
pytestmark = pytest.mark.xdist_group("test_checkpoint")

pytest.importorskip("orbax.checkpoint")

STEPS, SAVE_AT = 20, 9


@pytest.fixture(scope="session")
def example():
  return load_script("examples/checkpoint_resume.py")


@pytest.fixture(scope="session")
def demo(example, tmp_path_factory):
  """Runs the example's demo once: phases 1 and 2 here, phase 3 in a subprocess."""
  directory = tmp_path_factory.mktemp("ckpt")
  same = example.main(["--steps", str(STEPS), "--save-at", str(SAVE_AT),
                       "--dir", str(directory)])
  return directory, same


def test_resumed_run_is_bit_for_bit_the_uninterrupted_run(example, demo):
  directory, same = demo
  assert same
  uninterrupted = example.load_final(directory / "uninterrupted.npz")
  resumed = example.load_final(directory / "resumed.npz")
  assert example.identical(uninterrupted, resumed)
  # The comparison is not vacuous: it sees one flipped bit, and a dtype change.
  flipped = [x.copy() for x in resumed]
  params_leaf = next(i for i, x in enumerate(flipped) if x.dtype == np.float32 and x.size > 1)
  flipped[params_leaf].view(np.uint32).flat[0] ^= 1
  assert not example.identical(uninterrupted, flipped)
  widened = [x.astype(np.int64) if x.dtype == np.int32 else x for x in resumed]
  assert not example.identical(uninterrupted, widened)


def test_restored_state_has_the_saved_values_types_and_dtypes(example, demo):
  directory, _ = demo
  x, y, fresh, train_step = example.setup(STEPS)
  restored = example.restore(directory / "checkpoints", like=fresh)
  saved = example.train(fresh, x, y, train_step, SAVE_AT, poison_step=SAVE_AT - 1)
  assert example.identical([np.asarray(v) for v in jax.tree.leaves(restored)],
                           [np.asarray(v) for v in jax.tree.leaves(saved)])

  assert jax.tree.structure(restored) == jax.tree.structure(fresh)
  for path, leaf in jax.tree_util.tree_leaves_with_path(restored):
    assert isinstance(leaf, jax.Array), jax.tree_util.keystr(path)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(fresh), strict=True):
    assert a.dtype == b.dtype and a.shape == b.shape

  opt_state = restored["opt_state"]
  assert int(restored["step"]) == SAVE_AT
  # The step just before the checkpoint had NaN gradients and was skipped.
  assert int(opt_state.notfinite_count) == 1 and int(opt_state.total_notfinite) == 1
  assert not bool(opt_state.last_finite)
  lookahead_state = opt_state.inner_state[1]
  inject_state = lookahead_state.fast_state
  # SAVE_AT - 1 inner steps ran; Lookahead syncs every 6th: 8 % 6 = 2 since the last one.
  assert int(lookahead_state.steps_since_sync) == (SAVE_AT - 1) % 6
  assert int(inject_state.count) == SAVE_AT - 1
  # The stored learning rate is the schedule's value at the last inner step's count.
  lr = inject_state.hyperparams["learning_rate"]
  schedule = gtx.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=STEPS // 5,
                                              decay_steps=STEPS, end_value=1e-4)
  assert lr.dtype == np.float32
  assert float(lr) == pytest.approx(float(schedule(SAVE_AT - 2)), rel=1e-6)
  # The slow weights are not the params (the last sync was two fast steps ago).
  slow = jax.tree.leaves(lookahead_state.slow_weights)
  params = jax.tree.leaves(restored["params"])
  assert any(not np.array_equal(s, p) for s, p in zip(slow, params, strict=True))


def test_restoring_without_a_target_loses_the_state_types_which_is_why_one_is_passed(
    example, demo):
  import orbax.checkpoint as ocp
  directory, _ = demo
  _, _, fresh, _ = example.setup(STEPS)
  with ocp.CheckpointManager((directory / "checkpoints").absolute()) as manager:
    raw = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
  # Plain dicts and lists instead of the NamedTuple states: tx.update could not use it.
  assert isinstance(raw["opt_state"], dict)
  assert jax.tree.structure(raw) != jax.tree.structure(fresh)

"""Local SGD and DiLoCo (gradtx/_src/local_sgd.py).

Oracles:

* synchronous data-parallel SGD on the averaged gradient, for local SGD with
  ``sync_period=1`` (8 replicas, each with its own data): equal bit for bit with a
  learning rate that is a power of two (then ``mean(lr * g_i) == lr * mean(g_i)``
  exactly), here and under shard_map on 8 devices;
* the inner optimizer alone, for DiLoCo on one replica with outer ``sgd(1.0)``: within
  float rounding (the sync step computes ``theta + (-(theta - (p + u)))``, not ``p + u``);
* a NumPy transcription of DiLoCo's Algorithm 1 (Douillard et al. 2023), inner AdamW
  (Optax's formula) and outer Nesterov SGD (PyTorch's ``SGD(nesterov=True)``),
  replica by replica, outer step by outer step, with NumPy gradients of the test loss;
  compared after every inner step on a mixed-shape tree in float32 and float64;
* the plain-params run, for the same run on ``gtx.pack``'ed params (per replica);
* the leading-axis run (``axis_name=None``), for a named-axis run under ``shard_map``
  on 8 simulated devices in ONE subprocess
  (tests/local_sgd_worker.py), which also counts the all-reduces in the compiled steps
  and how often the synchronising branch executed, and smoke-runs
  examples/diloco_digits.py.
"""

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import eight_device_report, make_params

# One worker runs every test of this module (--dist loadgroup), so the session-scoped
# fixture below (a subprocess or example run of 10-25 s) runs once per test run, not
# once per worker.
pytestmark = pytest.mark.xdist_group("test_local_sgd")

WORKER = pathlib.Path(__file__).resolve().parent / "local_sgd_worker.py"


def replica_loss(params, shift):
  """``conftest.loss`` of the params shifted by ``shift`` (each replica its own data)."""
  return sum(jnp.sum((i + 1) * (p + shift - 0.5 * i) ** 2 + 0.3 * jnp.sin(3.0 * (p + shift)))
             for i, p in enumerate(jax.tree.leaves(params)))


def numpy_grads(leaves, shift):
  """``replica_loss``'s gradient, written out in NumPy."""
  return [2 * (i + 1) * (p + shift - 0.5 * i) + 0.9 * np.cos(3.0 * (p + shift))
          for i, p in enumerate(leaves)]


def stacked(params, replicas):
  return jax.tree.map(lambda p: jnp.stack([p] * replicas), params)


def leading_path(tx, params, shifts, steps):
  """Params (replicas stacked on axis 0) and state after each of ``steps`` jitted steps
  of ``tx``; replica r's gradients are those of ``replica_loss(., shifts[r])``."""

  @jax.jit
  def step(params, state):
    grads = jax.vmap(jax.grad(replica_loss))(params, shifts)
    updates, state = tx.update(grads, state, params)
    return gtx.apply_updates(params, updates), state

  state = jax.jit(tx.init)(params)  # one compilation, not one per operation
  path = []
  for _ in range(steps):
    params, state = step(params, state)
    path.append((params, state))
  return path


def assert_close(actual, expected, what, **tol):
  for (key, x), y in zip(jax.tree_util.tree_leaves_with_path(actual),
                         jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol,
                               err_msg=f"{what} {jax.tree_util.keystr(key)}")


# --- oracles -------------------------------------------------------------------------------


def test_local_sgd_with_sync_period_one_is_data_parallel_sgd():
  lr, replicas, steps = 2.0**-3, 8, 6
  shifts = jnp.linspace(-1.0, 1.0, replicas)
  # The same compiled gradients for both (a gradient fused into another program may
  # round differently).
  grads_fn = jax.jit(jax.vmap(jax.grad(replica_loss)))
  tx = gtx.local_sgd(gtx.sgd(lr), 1, None)
  local = stacked(make_params(), replicas)
  state = jax.jit(tx.init)(local)
  synchronous = local
  update = jax.jit(tx.update)
  for t in range(steps):
    updates, state = update(grads_fn(local, shifts), state, local)
    local = gtx.apply_updates(local, updates)
    synchronous = jax.tree.map(lambda p, g: p - lr * jnp.mean(g, 0), synchronous,
                               grads_fn(synchronous, shifts))
    for x, y in zip(jax.tree.leaves(local), jax.tree.leaves(synchronous)):
      np.testing.assert_array_equal(x, y, err_msg=f"step {t + 1}")
  # Not vacuous: the replicas' data differ, and so would their params without the sync.
  grads = grads_fn(synchronous, shifts)
  assert float(jnp.max(jnp.abs(grads["vector"][0] - grads["vector"][-1]))) > 1.0


def test_diloco_on_one_replica_with_outer_sgd_one_is_the_inner_optimizer():
  inner = gtx.adamw(0.05, weight_decay=0.1)
  params, shifts, steps = stacked(make_params(), 1), jnp.zeros(1), 10
  ours = leading_path(gtx.diloco(inner, gtx.sgd(1.0), 3, None), params, shifts, steps)
  alone = leading_path(inner, params, shifts, steps)
  for t in range(steps):
    assert_close(ours[t][0], alone[t][0], f"step {t + 1}", rtol=1e-6, atol=1e-6)
  assert int(ours[-1][1].count) == steps


def numpy_diloco(leaves, shifts, steps, sync_period, inner_lr, weight_decay, outer_lr,
                 momentum, b1=0.9, b2=0.999, eps=1e-8):
  """DiLoCo's Algorithm 1 in NumPy, in the leaves' dtype: per replica AdamW (Optax's
  ``adamw``: ``p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)``, state kept across
  outer steps), then ``Delta = mean_i (theta_prev - theta_i)`` and PyTorch's Nesterov SGD
  (``b = mu * b + Delta``; ``theta = theta_prev - lr * (Delta + mu * b)``). Returns each
  replica's params after every inner step (after the outer step on steps H, 2H, ...),
  the final global params and the outer momentum buffer."""
  dtype = leaves[0].dtype
  replicas = len(shifts)
  theta = [np.array(p) for p in leaves]
  buffers = [np.zeros_like(p) for p in theta]
  adam = [dict(t=0, m=[np.zeros_like(p) for p in theta], v=[np.zeros_like(p) for p in theta])
          for _ in range(replicas)]
  path = []
  for _ in range(math.ceil(steps / sync_period)):
    workers = [[p.copy() for p in theta] for _ in range(replicas)]       # theta_i <- theta
    for _ in range(sync_period):
      if len(path) == steps:
        return path, theta, buffers
      for i, worker in enumerate(workers):
        state = adam[i]
        state["t"] += 1
        t = state["t"]
        for k, g in enumerate(numpy_grads(worker, dtype.type(shifts[i]))):
          g = g.astype(dtype)
          state["m"][k] = b1 * state["m"][k] + (1 - b1) * g
          state["v"][k] = b2 * state["v"][k] + (1 - b2) * g * g
          m_hat = state["m"][k] / (1 - b1**t)
          v_hat = state["v"][k] / (1 - b2**t)
          worker[k] = (worker[k] - inner_lr * (m_hat / (np.sqrt(v_hat) + eps)
                                               + weight_decay * worker[k])).astype(dtype)
      path.append([np.stack([w[k] for w in workers]) for k in range(len(theta))])
    for k in range(len(theta)):
      delta = np.mean([theta[k] - w[k] for w in workers], axis=0)       # outer gradient
      buffers[k] = momentum * buffers[k] + delta
      theta[k] = (theta[k] - outer_lr * (delta + momentum * buffers[k])).astype(dtype)
    path[-1] = [np.stack([p] * replicas) for p in theta]
  return path, theta, buffers


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_diloco_matches_numpy_algorithm_1(dtype):
  replicas, sync_period, steps = 4, 4, 14   # three outer steps, and two inner steps more
  inner_lr, weight_decay, outer_lr, momentum = 0.02, 0.1, 0.7, 0.9
  with jax.enable_x64(dtype == jnp.float64):
    params = make_params(dtype)
    shifts = np.linspace(-0.5, 0.5, replicas)
    tx = gtx.diloco(gtx.adamw(inner_lr, weight_decay=weight_decay),
                    gtx.sgd(outer_lr, momentum=momentum, nesterov=True), sync_period, None)
    ours = leading_path(tx, stacked(params, replicas), jnp.asarray(shifts, dtype), steps)
    leaves, treedef = jax.tree.flatten(params)
    oracle, theta, buffers = numpy_diloco([np.asarray(p) for p in leaves], shifts, steps,
                                          sync_period, inner_lr, weight_decay, outer_lr,
                                          momentum)
    # float32: the deltas theta_prev - theta_i are differences of nearby numbers, and the
    # outer step multiplies their rounding by up to lr * (1 + 2 * momentum) = 2: ~1e-6
    # absolute differences at sync steps (observed <= 3e-6 on params of size ~1).
    tol = dict(rtol=2e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=1e-12,
                                                                        atol=1e-13)
    for t in range(steps):
      assert_close(ours[t][0], treedef.unflatten(oracle[t]), f"step {t + 1}", **tol)
      assert jax.tree.leaves(ours[t][0])[0].dtype == dtype
    state = ours[-1][1]
    assert_close(state.global_params, treedef.unflatten(theta), "global params", **tol)
    assert_close(state.outer_state[0].trace, treedef.unflatten(buffers), "outer momentum",
                 **tol)
    # Not vacuous: after two inner steps since the last sync the replicas differ.
    final = jax.tree.leaves(ours[-1][0])[1]
    assert float(jnp.max(jnp.abs(final[0] - final[-1]))) > 1e-3


def test_packed_params_train_like_plain_params():
  replicas, steps = 3, 7
  shifts = jnp.linspace(-0.5, 0.5, replicas)
  tx = gtx.diloco(gtx.chain(gtx.clip_by_global_norm(1.0), gtx.adamw(0.05, weight_decay=0.1)),
                  gtx.sgd(0.7, momentum=0.9, nesterov=True), 3, None)
  plain = leading_path(tx, stacked(make_params(), replicas), shifts, steps)
  packed = jax.vmap(gtx.pack)(stacked(make_params(), replicas))
  assert len(jax.tree.leaves(packed)) == 1  # one float32 buffer per replica

  @jax.jit
  def step(packed, state):
    grads = jax.vmap(jax.grad(lambda p, s: replica_loss(gtx.unpack(p), s)))(packed, shifts)
    updates, state = tx.update(grads, state, packed)
    return gtx.apply_updates(packed, updates), state

  state = jax.jit(tx.init)(packed)
  for t in range(steps):
    packed, state = step(packed, state)
    assert isinstance(packed, gtx.Packed)
    assert_close(jax.vmap(gtx.unpack)(packed), plain[t][0], f"step {t + 1}", rtol=1e-6,
                 atol=1e-6)
  assert_close(gtx.unpack(state.global_params), plain[-1][1].global_params, "global params",
               rtol=1e-6, atol=1e-6)


# --- construction and misuse ---------------------------------------------------------------

CONSTRUCTORS = {
    "diloco": lambda **kw: gtx.diloco(**{"inner": gtx.sgd(0.25), "outer": gtx.sgd(0.5),
                                         "sync_period": 2, "axis_name": None, **kw}),
    "local_sgd": lambda **kw: gtx.local_sgd(**{"inner": gtx.sgd(0.25), "sync_period": 2,
                                               "axis_name": None, **kw}),
}


@pytest.mark.parametrize("name", CONSTRUCTORS)
@pytest.mark.parametrize("bad", [0, -1, 1.5, math.nan, True, "2", None])
def test_sync_period_must_be_an_integer_of_at_least_one(name, bad):
  with pytest.raises((TypeError, ValueError),
                     match=f"^{name}: sync_period must be an integer >= 1, got "):
    CONSTRUCTORS[name](sync_period=bad)


@pytest.mark.parametrize("name", CONSTRUCTORS)
@pytest.mark.parametrize("bad", [1, ["data"], ("data", 2), (), b"data"])
def test_axis_name_must_be_a_name_a_tuple_of_names_or_none(name, bad):
  with pytest.raises(TypeError, match=f"^{name}: axis_name must be the name of a mapped "
                                      r"axis \(a str\), a tuple of names, or None"):
    CONSTRUCTORS[name](axis_name=bad)


@pytest.mark.parametrize("name,param", [("diloco", "inner"), ("diloco", "outer"),
                                        ("local_sgd", "inner")])
def test_inner_and_outer_must_be_transforms(name, param):
  with pytest.raises(TypeError, match=f"^{name}: {param} must be a gradient transformation"):
    CONSTRUCTORS[name](**{param: 0.1})
  with pytest.raises(TypeError, match=f"^{name}: {param} must be .*call it first"):
    CONSTRUCTORS[name](**{param: gtx.adam})


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_valid_arguments_are_accepted(name):
  for axis_name in (None, "data", ("pod", "data")):
    assert isinstance(CONSTRUCTORS[name](sync_period=1, axis_name=axis_name),
                      gtx.GradientTransformation)


def test_traced_sync_period_gives_the_same_steps():
  # diloco and local_sgd share this code path; one leaf keeps the programs small.
  params = {"w": jnp.asarray([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])}
  shifts = jnp.asarray([-0.5, 0.5])

  def run(sync_period):
    tx = CONSTRUCTORS["diloco"](sync_period=sync_period)
    state = tx.init(params)
    p, out = params, []
    for _ in range(3):
      grads = jax.vmap(jax.grad(replica_loss))(p, shifts)
      updates, state = tx.update(grads, state, p)
      p = gtx.apply_updates(p, updates)
      out.append(p)
    return out

  assert_close(jax.jit(run)(jnp.asarray(2)), jax.jit(lambda: run(2))(), "traced", rtol=1e-6,
               atol=1e-7)


def test_leading_axis_is_required_and_common_to_every_leaf():
  tx = CONSTRUCTORS["diloco"]()
  with pytest.raises(ValueError, match=r"^diloco: with axis_name=None every params leaf has "
                                       r"a leading replica axis, but the leaf at "
                                       r"\['s'\] has shape \(\)"):
    tx.init({"s": jnp.zeros(()), "w": jnp.zeros((2, 3))})
  uneven = {"a": jnp.zeros((4, 3)), "b": jnp.zeros((3,))}
  with pytest.raises(ValueError, match=r"the leaf at \['b'\] has shape \(3,\), expected a "
                                       r"leading axis of size 4 \(as \['a'\] has\)"):
    tx.init(uneven)


def test_leading_axis_slices_per_replica_extra_arguments_only():
  # value= has the replica axis and is sliced; scale= (a scalar array) and offset= (a
  # float) are given to every replica as they are.
  def update(updates, state, params=None, *, value, scale, offset, **extra_args):
    return jax.tree.map(lambda u: u * value * scale + offset, updates), state

  tx = gtx.local_sgd(gtx.GradientTransformation(gtx.init_empty_state, update), 5, None)
  params = {"w": jnp.ones((2, 3))}
  updates, _ = tx.update(params, tx.init(params), params, value=jnp.asarray([1.0, 2.0]),
                         scale=jnp.asarray(3.0), offset=0.5)
  np.testing.assert_array_equal(updates["w"], [[3.5] * 3, [6.5] * 3])


def test_update_needs_the_params():
  tx = CONSTRUCTORS["local_sgd"]()
  params = stacked(make_params(), 2)
  with pytest.raises(ValueError, match="^local_sgd: this transform needs the params"):
    tx.update(params, tx.init(params))


def test_named_axis_outside_a_mapped_context_is_an_error():
  tx = CONSTRUCTORS["diloco"](axis_name="data", sync_period=1)
  params = make_params()
  with pytest.raises(NameError, match="data"):
    tx.update(params, tx.init(params), params)


# --- 8 devices -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def report():
  return eight_device_report(WORKER)


def test_shard_map_run_equals_the_leading_axis_run(report):
  # pmean and jnp.mean may add the 8 deltas in different orders: float32 roundoff,
  # carried into Adam's normalisation (observed <= 1e-6 after 10 steps).
  run = report["shard_map_vs_leading"]
  assert report["devices"] == 8
  assert run["counts"] == list(range(1, 11))
  for t, row in enumerate(run["steps"], start=1):
    for what, difference in row.items():
      assert difference <= 2e-6, (t, what, difference)
  assert run["params_moved"] > 0.1


def test_local_sgd_with_sync_period_one_is_data_parallel_sgd_on_eight_devices(report):
  run = report["local_sgd_vs_data_parallel"]
  assert run["differences"] == [0.0] * 6
  assert run["replicas_differ_in_data"] > 1.0


def test_all_reduces_are_only_in_the_synchronising_branch(report):
  hlo = report["hlo"]
  # DiLoCo's step: every all-reduce is inside the conditional, none runs on other steps;
  # together they carry every param once (make_params: 1 + 5 + 12 + 24 values).
  assert hlo["diloco"]["always"] == []
  assert sum(hlo["diloco"]["in_conditional"]) == 42
  assert len(hlo["diloco"]["in_conditional"]) == hlo["diloco_text_all_reduces"]
  # Data-parallel SGD: its gradients' all-reduce runs on every step.
  assert sum(hlo["data_parallel"]["always"]) == 42
  assert hlo["data_parallel"]["in_conditional"] == []


def test_the_synchronising_branch_runs_on_steps_h_2h_only(report):
  # H = 4, 10 steps: the outer optimizer (in the branch with the all-reduce) ran after
  # steps 4 and 8, on every device; the inner one on every step.
  run = report["shard_map_vs_leading"]
  assert run["inner_updates"] == [10] * 8
  assert run["outer_updates_after_each_step"] == [[t // 4] * 8 for t in range(1, 11)]


def test_example_counts_one_twentieth_of_the_all_reduces(report):
  data_parallel, diloco = report["example"]
  assert data_parallel["all_reduces"] == 40 and diloco["all_reduces"] == 2
  assert data_parallel["values_all_reduced"] == 20 * diloco["values_all_reduced"]
  # 40 steps only: both learn (chance is 0.1).
  assert data_parallel["test_accuracy"] > 0.8 and diloco["test_accuracy"] > 0.8

"""Data-parallel and model-parallel training on a device mesh, and the sharding helper.

The mesh runs need 8 devices, which XLA only simulates on CPU when told so before JAX
starts; so ONE subprocess (tests/mesh_worker.py, with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``) trains examples/data_parallel.py's
three layouts (replicated; params sharded over a 2x4 ``('data', 'model')`` mesh; ZeRO-1)
and the one-device reference, and reports; the tests below check its report. The rest of
this file tests :func:`state_shardings` in this process, on a one-device mesh (shardings
are still fully specified by their ``PartitionSpec``).

Tolerance against the one-device run: 1e-6 absolute on params (|p| <= ~1) and state
after 20 steps, 1e-6 on the losses. A sharded step sums the batch mean and, in the
``sharded`` layout, the hidden contraction, in a different order (per-device partial
sums, then an all-reduce), so gradients differ by float32 roundoff (~1e-7 relative), and
Adam's normalisation carries that into the params; observed: ~6e-8 after 20 steps
(~4e-6 after 100 steps).
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P, SingleDeviceSharding

import gradtx as gtx
from conftest import eight_device_report
from gradtx._src.combine import MaskedNode
from gradtx._src.sharding import state_shardings

# One worker runs every test of this module (--dist loadgroup), so the session-scoped
# fixture below (a subprocess or example run of 10-25 s) runs once per test run, not
# once per worker.
pytestmark = pytest.mark.xdist_group("test_mesh")

WORKER = pathlib.Path(__file__).resolve().parent / "mesh_worker.py"
TOL = 1e-6
LAYOUTS = ("replicated", "sharded", "zero1")


@pytest.fixture(scope="session")
def report():
  return eight_device_report(WORKER, 20)


def test_eight_devices_and_every_layout_learns(report):
  assert report["devices"] == 8
  first, last = report["one_device_loss_first_last"]
  assert last < first / 2
  assert set(report["layouts"]) == set(LAYOUTS)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_results_equal_the_one_device_run(report, layout):
  result = report["layouts"][layout]
  assert result["params_difference"] <= TOL
  assert result["state_difference"] <= TOL
  assert result["loss_difference"] <= TOL


@pytest.mark.parametrize("layout", LAYOUTS)
def test_jitted_steps_keep_the_promised_shardings(report, layout):
  result = report["layouts"][layout]
  assert result["state_shardings_as_promised"]
  assert result["params_shardings_kept"]
  assert result["all_named"]
  assert result["count"] == "P()"


def test_sharded_layout_state_lives_where_its_param_lives(report):
  result = report["layouts"]["sharded"]
  assert result["params"] == {"['b1']": "P('model',)", "['b2']": "P()",
                              "['w1']": "P(None, 'model')", "['w2']": "P('model', None)"}
  for field in ("mu", "nu", "slow_weights"):
    assert result[field] == result["params"], field
  assert result["mu_w1_shard_shape"] == [64, 32]  # 128 columns over 4 'model' devices


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bare_jitted_init_shards_the_state_like_the_params(report, layout):
  # No out_shardings: the per-param state takes its param's sharding by itself.
  assert report["layouts"][layout]["bare_init_like_params"] == {
      "mu": True, "nu": True, "slow_weights": True}


def test_replicated_layout_state_is_replicated(report):
  result = report["layouts"]["replicated"]
  for field in ("params", "mu", "nu", "slow_weights"):
    assert set(result[field].values()) == {"P()"}, field
  assert result["mu_w1_shard_shape"] == [64, 128]


def test_zero1_layout_splits_the_state_over_the_data_axis(report):
  result = report["layouts"]["zero1"]
  assert set(result["params"].values()) == {"P()"}
  expected = {"['b1']": "P('data',)", "['b2']": "P()",  # 10 rows do not split over 8
              "['w1']": "P('data', None)", "['w2']": "P('data', None)"}
  for field in ("mu", "nu", "slow_weights"):
    assert result[field] == expected, field
  assert result["mu_w1_shard_shape"] == [8, 128]  # 1/8 of Adam's mu on each device


# ------------------------------------------------------- state_shardings, in this process


def mesh_1x1():
  return jax.make_mesh((1, 1), ("data", "model"), axis_types=(AxisType.Auto,) * 2)


PARAMS = {"dense": {"kernel": jnp.ones((4, 6)), "bias": jnp.zeros(6)},
          "norm": {"scale": jnp.ones(6)}, "head": {"kernel": jnp.ones((6, 2))}}
SPECS = {"dense": {"kernel": P(None, "model"), "bias": P("model")},
         "norm": {"scale": P()}, "head": {"kernel": P("model", None)}}


def named(mesh, specs):
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                      is_leaf=lambda x: isinstance(x, P))


def spec_tree(shardings):
  return jax.tree.map(lambda s: s.spec, shardings)


def test_per_param_leaves_follow_their_param_and_scalars_are_replicated():
  mesh = mesh_1x1()
  tx = gtx.chain(gtx.clip_by_global_norm(1.0),
                 gtx.inject_hyperparams(gtx.adamw)(learning_rate=1e-3),
                 gtx.lookahead(gtx.sgd(0.1, momentum=0.9)))
  out = spec_tree(state_shardings(tx, PARAMS, named(mesh, SPECS)))
  adam = out[1].inner_state[0]
  assert adam.mu == SPECS and adam.nu == SPECS
  assert adam.count == P() and out[1].count == P()
  assert set(out[1].hyperparams.values()) == {P()}
  assert out[2].slow_weights == SPECS and out[2].fast_state[0].trace == SPECS
  assert out[2].steps_since_sync == P()


def test_partition_and_masked_groups_keep_their_masked_nodes():
  mesh = mesh_1x1()
  labels = {"dense": {"kernel": "decay", "bias": "plain"}, "norm": {"scale": "plain"},
            "head": {"kernel": "decay"}}
  tx = gtx.partition({"decay": gtx.adamw(1e-3), "plain": gtx.sgd(0.1, momentum=0.9)}, labels)
  shardings = state_shardings(tx, PARAMS, named(mesh, SPECS))
  mu = spec_tree(shardings.inner_states["decay"].inner_state[0].mu)
  assert mu["dense"]["kernel"] == P(None, "model") and mu["head"]["kernel"] == P("model", None)
  assert isinstance(mu["dense"]["bias"], MaskedNode)
  trace = spec_tree(shardings.inner_states["plain"].inner_state[0].trace)
  assert trace["dense"]["bias"] == P("model") and isinstance(trace["head"]["kernel"], MaskedNode)
  # The shardings tree fits the state: jit accepts it as out_shardings.
  state = jax.jit(tx.init, out_shardings=shardings)(PARAMS)
  assert jax.tree.structure(state) == jax.tree.structure(tx.init(PARAMS))


def test_zero1_splits_the_first_free_divisible_dimension():
  mesh = jax.make_mesh((1, 1), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
  params = {"w": jnp.ones((4, 6)), "b": jnp.zeros(6), "s": jnp.ones(())}
  specs = {"w": P(None, "model"), "b": P(), "s": P()}
  out = spec_tree(state_shardings(gtx.adam(1e-3), params, named(mesh, specs),
                                  shard_over="data"))
  assert out[0].mu == {"w": P("data", "model"), "b": P("data"), "s": P()}
  assert out[0].count == P()
  # A dimension already split over the data axis stays as it is.
  already = {"w": P("data", None), "b": P(), "s": P()}
  out = spec_tree(state_shardings(gtx.adam(1e-3), params, named(mesh, already),
                                  shard_over="data"))
  assert out[0].mu["w"] == P("data", None)


def test_defaults_to_the_params_own_shardings_and_accepts_abstract_params():
  mesh = mesh_1x1()
  shardings = named(mesh, SPECS)
  placed = jax.device_put(PARAMS, shardings)
  from_arrays = spec_tree(state_shardings(gtx.adam(1e-3), placed))
  abstract = jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s),
                          PARAMS, shardings)
  from_abstract = spec_tree(state_shardings(gtx.adam(1e-3), abstract))
  assert from_arrays[0].mu == SPECS == from_abstract[0].mu


def test_single_device_shardings_are_reused_for_the_scalars():
  device = SingleDeviceSharding(jax.devices()[0])
  out = state_shardings(gtx.adam(1e-3), PARAMS, jax.tree.map(lambda _: device, PARAMS))
  assert all(s == device for s in jax.tree.leaves(out))


def test_non_param_shaped_leaves_are_replicated():
  mesh = mesh_1x1()
  out = spec_tree(state_shardings(gtx.flatten(gtx.adam(1e-3)), PARAMS, named(mesh, SPECS)))
  assert set(jax.tree.leaves(out)) == {P()}


def test_errors_say_what_is_wrong():
  mesh = mesh_1x1()
  with pytest.raises(ValueError, match="structure of the params"):
    state_shardings(gtx.adam(1e-3), PARAMS, {"dense": NamedSharding(mesh, P())})
  with pytest.raises(ValueError, match="carry no .sharding"):
    state_shardings(gtx.adam(1e-3), {"w": np.ones(3)})
  with pytest.raises(ValueError, match="not an axis of the mesh"):
    state_shardings(gtx.adam(1e-3), PARAMS, named(mesh, SPECS), shard_over="batch")
  device = SingleDeviceSharding(jax.devices()[0])
  with pytest.raises(ValueError, match="needs NamedSharding"):
    state_shardings(gtx.adam(1e-3), PARAMS, jax.tree.map(lambda _: device, PARAMS),
                    shard_over="data")


def test_stacked_and_extended_per_param_leaves_are_split_on_the_params_axes():
  """L-BFGS's memory stacks per-param arrays, (m, *shape); the LSTM optimizer's state
  extends them, (*shape, layers, hidden): each is split like its param on the param's
  axes (as a bare jax.jit(init) splits it), the new axes unsplit."""
  mesh = mesh_1x1()
  lbfgs = spec_tree(state_shardings(gtx.scale_by_lbfgs(memory_size=3), PARAMS,
                                    named(mesh, SPECS)))
  assert lbfgs.diff_params_memory["dense"]["kernel"] == P(None, None, "model")
  assert lbfgs.diff_updates_memory["head"]["kernel"] == P(None, "model", None)
  assert lbfgs.diff_params_memory["norm"]["scale"] == P(None, None)
  lstm = spec_tree(state_shardings(
      gtx.learned.lstm_optimizer(gtx.learned.pretrained("quadratic")), PARAMS,
      named(mesh, SPECS)))
  assert lstm.hidden["dense"]["bias"] == P("model", None, None)
  assert lstm.cell["head"]["kernel"] == P("model", None, None, None)

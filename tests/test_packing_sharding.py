"""Packed params on a device mesh: ZeRO-1 state shardings, and refusing model-sharded params.

The mesh runs need 8 devices, which XLA only simulates on CPU when told so before JAX
starts; so ONE subprocess (tests/packing_sharding_worker.py, with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``) trains a packed MLP (two buffers
of 828 and 43 floats, padded to 832 and 48 by ``pack(..., multiple_of=8)``) with Adam,
clip_by_global_norm + AdamW and Adafactor (whose factored state lives on the unpacked
tree), params replicated and the state split over ``data`` by
``gtx.state_shardings(tx, packed, shard_over="data")``, and the same steps on one
device; it also calls ``check_packable`` on params split over a ``("data", "model")``
mesh. The tests below check its report. The rest of this file tests
``state_shardings`` on packed params in this process, on a one-device mesh (shardings
are still fully specified by their ``PartitionSpec``).

Tolerance against the one-device run: 1e-6 absolute on params (|p| <= ~1), state and
losses after 10 steps. The split batch's mean gradient is summed in another order
(per-device partial sums, then an all-reduce), so gradients differ by float32 roundoff
(~1e-7 relative), which Adam's normalisation carries into the params; observed ~1e-7.
"""

import pathlib

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import gradtx as gtx
from conftest import eight_device_report
from gradtx._src.sharding import check_packable

# One worker runs every test of this module (--dist loadgroup), so the session-scoped
# fixture below (a subprocess or example run of 10-25 s) runs once per test run, not
# once per worker.
pytestmark = pytest.mark.xdist_group("test_packing_sharding")

WORKER = pathlib.Path(__file__).resolve().parent / "packing_sharding_worker.py"
TOL = 1e-6
OPTIMIZERS = ("adam", "clip+adamw", "adafactor")
WHAT_TO_DO = ("packing concatenates leaves, which would gather them onto every device: "
              "pack only replicated params")


@pytest.fixture(scope="session")
def report():
  return eight_device_report(WORKER)


def test_eight_devices_and_every_optimizer_learns(report):
  assert report["devices"] == 8
  assert list(report["optimizers"]) == list(OPTIMIZERS)
  for result in report["optimizers"].values():
    first, last = result["loss_first_last"]
    assert last < first


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_zero1_run_equals_the_one_device_run(report, name):
  result = report["optimizers"][name]
  assert result["params_difference"] <= TOL
  assert result["state_difference"] <= TOL
  assert result["loss_difference"] <= TOL


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_jitted_steps_keep_the_promised_shardings(report, name):
  result = report["optimizers"][name]
  assert result["state_kept_every_step"]
  assert result["params_kept_every_step"]
  assert result["got"] == result["promised"]


@pytest.mark.parametrize("name", ["adam", "clip+adamw"])
def test_packed_moments_are_split_over_data(report, name):
  result = report["optimizers"][name]
  prefix = "[1][0]" if name == "clip+adamw" else "[0]"
  expected = {f"{prefix}.count": "P()"}
  for field in ("mu", "nu"):
    for group in ("float32/biases", "float32/weights"):
      expected[f"{prefix}.{field}['{group}']"] = "P('data',)"
  assert result["promised"] == expected
  assert result["buffer_lengths"] == [48, 832]  # 43 and 828 floats, padded
  assert sorted(result["buffer_shard_shapes"]) == [[6], [6], [104], [104]]  # 48/8, 832/8


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_padding_of_params_and_packed_state_stays_zero(report, name):
  assert report["optimizers"][name]["padding_largest"] == 0.0


def test_per_leaf_state_of_packed_params_is_split_like_plain_leaves(report):
  promised = report["optimizers"]["adafactor"]["promised"]
  assert promised["[0].v['b1']"] == "P()"  # 36: 8 does not divide it, as on plain leaves
  assert promised["[0].v['w1']"] == "P('data', None)"
  assert promised["[0].v_row['w1']"] == "P()"


def test_state_keeps_its_sharding_without_out_shardings(report):
  assert report["state_kept_without_out_shardings"]


def test_a_buffer_the_axis_does_not_divide_is_replicated_with_a_warning(report):
  result = report["indivisible"]
  assert result["length"] == 676
  assert result["promised"] == {"[0].count": "P()", "[0].mu['float32']": "P()",
                                "[0].nu['float32']": "P()"}
  [message] = result["warnings"]
  assert "'float32' (676 elements, 4 short of a multiple of 8)" in message
  assert "mesh axis 'data'" in message
  assert "gtx.pack(params, multiple_of=8)" in message


def test_a_buffer_padded_to_a_multiple_of_the_axis_is_split_without_a_warning(report):
  result = report["padded"]
  assert result["length"] == 680
  assert result["promised"] == {"[0].count": "P()", "[0].mu['float32']": "P('data',)",
                                "[0].nu['float32']": "P('data',)"}
  assert result["warnings"] == []


@pytest.mark.parametrize("case, axes, paths", [
    ("model", "('model',)", "['b1'], ['w1'], ['w2']"),
    ("fsdp", "('data',)", "['w1']"),
    ("abstract", "('model',)", "['b1'], ['w1'], ['w2']"),
    ("traced_explicit", "('model',)", "['w1']"),
])
def test_check_packable_refuses_sharded_params_and_says_what_to_do(report, case, axes,
                                                                   paths):
  message = report["packable"][case]
  assert message.startswith(f"pack(...) got params sharded over mesh axes {axes} at "
                            f"{paths};")
  assert WHAT_TO_DO in message
  assert "gtx.state_shardings(tx, packed, shard_over=...)" in message


@pytest.mark.parametrize("case", ["replicated", "one_device_spec", "packed"])
def test_check_packable_accepts_replicated_params(report, case):
  assert report["packable"][case] is None


# In this process: one device, a one-device mesh.

def one_device_mesh():
  return jax.make_mesh((1,), ("data",), axis_types=(AxisType.Auto,))


def params():
  return {"w": jnp.ones((4, 6)), "b": jnp.zeros(6), "scale": jnp.ones(6)}


LABELS = {"w": "decay", "b": "none", "scale": "none"}


def replicated_like(tree):
  return jax.tree.map(lambda _: NamedSharding(one_device_mesh(), P()), tree)


def test_packed_state_takes_its_buffers_sharding():
  packed = gtx.pack(params(), LABELS)
  got = gtx.state_shardings(gtx.adam(1.0), packed, replicated_like(packed),
                            shard_over="data")
  assert isinstance(got[0].mu, gtx.Packed) and got[0].mu.layout == packed.layout
  assert [s.spec for s in got[0].mu.buffers] == [P("data"), P("data")]
  assert got[0].count.spec == P()


def test_packed_params_default_to_their_buffers_own_shardings():
  packed = jax.device_put(gtx.pack(params()), NamedSharding(one_device_mesh(), P()))
  got = gtx.state_shardings(gtx.adam(1.0), packed, shard_over="data")
  assert got[0].nu.buffers[0].spec == P("data")


@pytest.mark.parametrize("make", [
    lambda: gtx.masked(gtx.adam(1.0), {"w": True, "b": False, "scale": False}),
    lambda: gtx.partition({"decay": gtx.adam(1.0), "none": gtx.sgd(1.0, momentum=0.9)},
                          LABELS),
], ids=["masked", "partition"])
def test_state_of_some_buffers_takes_those_buffers_shardings(make):
  packed = gtx.pack(params(), LABELS)
  shardings = jax.tree.map(lambda _: NamedSharding(one_device_mesh(), P()), packed)
  got = gtx.state_shardings(make(), packed, shardings, shard_over="data")
  buffers = [leaf for leaf in jax.tree.leaves(got) if leaf.spec != P()]
  assert buffers and all(s.spec == P("data") for s in buffers)
  state = jax.eval_shape(make().init, packed)
  packed_state = [leaf for leaf in jax.tree.leaves(state) if leaf.ndim == 1]
  assert len(buffers) == len(packed_state)


def test_per_leaf_state_on_the_unpacked_tree_is_matched():
  packed = gtx.pack(params())
  got = gtx.state_shardings(gtx.adafactor(1.0), packed, replicated_like(packed),
                            shard_over="data")
  assert got[0].v["w"].spec == P("data", None)
  assert got[0].v["b"].spec == P("data")


def test_shardings_of_the_plain_tree_for_packed_params_say_what_to_give():
  packed = gtx.pack(params())
  with pytest.raises(ValueError, match=r"for packed params, one sharding per buffer"):
    gtx.state_shardings(gtx.adam(1.0), packed, replicated_like(params()))


def test_check_packable_passes_unplaced_and_single_device_params():
  check_packable(params())
  check_packable(jax.device_put(params(), NamedSharding(one_device_mesh(), P("data"))))
  check_packable(jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params()))

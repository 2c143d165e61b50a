"""A bare ``jax.jit(tx.init)`` shards every per-param state leaf like its param.

The promise: under ``jax.jit``, without ``out_shardings``, ``init`` gives each per-param
state leaf its param's sharding, because per-param state is computed from the param
(``tree_zeros_like``/``tree_full_like`` of :mod:`gradtx._src.tree.casting`) and XLA's
sharding propagation carries the param's sharding over, where a constant broadcast
(``jnp.zeros(shape)``) would land on one device.

Checked for every transform of tests/test_properties.py's registry, plus the defaults of
``lbfgs``, ``scale_by_lbfgs``, the three line searches, ``newton`` and ``hessian_free``,
on 8 simulated CPU devices: ONE subprocess (tests/sharding_worker.py, with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``, so the rest of the suite keeps
one device) compiles every ``init`` once on params over a ``(4, 2)`` ``('data',
'model')`` mesh (a matrix ``P('data', None)``, a matrix ``P(None, 'model')``, a
replicated vector, a replicated scalar) and reports, per transform, the per-param leaves
whose sharding is not their param's: leaves shaped like their param (Adam's moments,
the line searches' stored gradient); L-BFGS's memories, shaped ``(memory_size,
*param.shape)``, sharded ``(None, *param_spec)``; leaves shaped ``(*param.shape, ...)``
(the LSTM optimizer's hidden state) sharded ``(*param_spec, None, ...)``. A control
transform that broadcasts constants must be caught.
"""

import pathlib

import pytest

from conftest import eight_device_report
from sharding_worker import NAMES

# One worker runs every test of this module (--dist loadgroup), so the session-scoped
# fixture below (a subprocess or example run of 10-25 s) runs once per test run, not
# once per worker.
pytestmark = pytest.mark.xdist_group("test_state_sharding")

WORKER = pathlib.Path(__file__).resolve().parent / "sharding_worker.py"


@pytest.fixture(scope="session")
def report():
  return eight_device_report(WORKER)


def test_eight_devices_and_every_transform_reported(report):
  assert report["devices"] == 8
  assert list(report["transforms"]) == NAMES


def test_the_check_catches_state_broadcast_from_constants(report):
  result = report["transforms"]["control/constant_zeros"]
  assert result["checked"] == {"same": 4}
  assert len(result["wrong"]) == 4  # sharded and replicated params alike


@pytest.mark.parametrize("name", [
    "lbfgs", "scale_by_lbfgs", "+lbfgs()", "+scale_by_lbfgs()"])
def test_lbfgs_memories_are_checked(report, name):
  assert report["transforms"][name]["checked"]["stacked"] == 8  # 2 memories x 4 params


@pytest.mark.parametrize("name", [
    "scale_by_backtracking_linesearch", "scale_by_zoom_linesearch",
    "scale_by_more_thuente_linesearch", "+scale_by_backtracking_linesearch(store_grad=True)",
    "+scale_by_zoom_linesearch()", "+scale_by_more_thuente_linesearch()"])
def test_line_search_gradients_are_checked(report, name):
  assert report["transforms"][name]["checked"]["same"] == 4


@pytest.mark.parametrize("name", [name for name in NAMES if not name.startswith("control/")])
def test_per_param_state_takes_its_params_sharding(report, name):
  result = report["transforms"][name]
  assert "error" not in result, result["error"]
  assert result["wrong"] == [], result["wrong"]

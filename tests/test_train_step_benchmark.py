"""``benchmarks/train_step.py``, whose figures the READMEs quote, on a tiny tree: every
contender is built and timed, and the ones the READMEs' claims rest on do what their
labels say (the floor writes the gradient where the params were; the packed contenders
lay the params out as asked; every Adam contender takes the same first step)."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import ROOT, load_script


@pytest.fixture(scope="module")
def bench():
  with pytest.MonkeyPatch.context() as patch:
    patch.syspath_prepend(str(ROOT / "benchmarks"))
    yield load_script("benchmarks/train_step.py")


def test_tiny_run_times_every_contender_and_the_floor_is_the_gradient(bench, capsys):
  pytest.importorskip("optax")
  problem = bench.synthetic(12, 10)  # 12 leaves of 10 floats
  params, batch, loss, _ = problem
  steps = bench.contenders(problem, with_torch=False, buffer_sizes=[30],
                           buffer_leaves=[4])
  assert list(steps) == ["optax", "gradtx", "gradtx packed", "packed <=30",
                         "packed <=4 leaves", "floor <=30"]
  assert [len(steps[k].params.buffers) for k in
          ("gradtx packed", "packed <=30", "packed <=4 leaves", "floor <=30")] == [1, 4, 3, 4]

  # Each contender took one step when built (warm): every Adam contender took Adam's first
  # step from the same params, lr * g / (|g| + eps); the floor wrote the gradient.
  gradient = jax.grad(loss)(params, batch)
  expected = jax.tree.map(lambda p, g: p - 1e-3 * g / (jnp.abs(g) + 1e-8), params,
                          gradient)
  for name in ("optax", "gradtx", "gradtx packed", "packed <=30", "packed <=4 leaves"):
    for x, y in zip(jax.tree.leaves(steps[name].plain_params()), jax.tree.leaves(expected),
                    strict=True):
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=name)
  for x, y in zip(jax.tree.leaves(steps["floor <=30"].plain_params()),
                  jax.tree.leaves(gradient), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg="floor")

  times = bench.time_round_robin(steps, rounds=1, per_round=1)
  assert set(times) == set(steps) and all(t[0] > 0 for t in times.values())
  bench.bench_problem("tiny", problem, 1, 1, buffer_sizes=[30], buffer_leaves=[4])
  out = capsys.readouterr().out
  for name in steps:
    assert f"\n  {name:18s} " in out, out
  if importlib.util.find_spec("torch") is not None:
    assert "\n  torch fused " in out, out

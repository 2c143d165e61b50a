"""The second-order benchmark's smoke run (``benchmarks/second_order.py --quick``, two of
its problems): every problem has every method's row, and every gradtx method reaches the
tolerance."""

import pytest

from conftest import load_script

pytest.importorskip("scipy")
pytest.importorskip("sklearn")


def test_quick_run_has_every_row_and_gradtx_converges(capsys):
  bench = load_script("benchmarks/second_order.py")
  # Two of the four --quick problems (an array and a dict of params): compiling all
  # eight methods for all four is slow on a CI machine (see benchmarks/README.md).
  problems = ["rosenbrock-2", "digits-lr-3"]
  rows = bench.main(["--quick", "--problems", ",".join(problems)])
  out = capsys.readouterr().out

  methods = [m for m in bench.METHODS if bench.jaxopt is not None or m != bench.JAXOPT]
  if bench.jaxopt is None:
    assert "jaxopt does not import" in out
  assert [(r.problem, r.method) for r in rows] == [(p, m) for p in problems for m in methods]

  table = [line for line in out.splitlines() if line.startswith("| ")]
  assert len(table) == 1 + len(rows), out  # the header and one line per row
  for r in rows:
    assert any(line.startswith(f"| {r.problem:<15}| {r.method:<24}|") for line in table), out

  tol = 1e-5
  for r in rows:
    if r.method.startswith("gtx"):
      assert r.converged and r.grad_norm <= tol, r
      assert r.fevals >= r.steps + 1 and r.seconds > 0, r
  # The reported gradient norms are recomputed at the returned params; the methods that
  # test the 2-norm themselves stop at the tolerance.
  for r in rows:
    if r.method in ("scipy L-BFGS-B", "scipy trust-ncg", "gtx lbfgs", bench.OURS):
      assert r.grad_norm <= tol, r
  assert "goal (f evals <= SciPy L-BFGS-B" in out and f"rosenbrock-2, {bench.OURS}:" in out


def test_nearby_starts_study_counts_every_method():
  """The nearby-starts study (``--starts``) on 2-D Rosenbrock: the first start is x0, the
  others are 1e-6 away, and L-BFGS-B's line search and first step in gradtx
  (``bench.OURS``) take L-BFGS-B's evaluations from every one of them."""
  import jax
  import numpy as np

  bench = load_script("benchmarks/second_order.py")
  with jax.enable_x64(True):
    problem = bench.rosenbrock_problem(2)
    starts = bench.nearby_starts(problem, 3)
    np.testing.assert_array_equal(starts[0], problem.x0)
    for x0 in starts[1:]:
      shift = np.abs(np.asarray(x0) - np.asarray(problem.x0)) / (1 + np.abs(problem.x0))
      assert 0 < shift.max() < 1e-5
    counts = bench.starts_study(problem, 3, 1e-5, 2000)
  expected = [m for m in bench.STUDY_METHODS if bench.jaxopt is not None or m != bench.JAXOPT]
  assert list(counts) == expected
  assert all(len(c) == 3 and min(c) > 10 for c in counts.values()), counts
  assert counts[bench.OURS] == counts[bench.BASELINE], counts

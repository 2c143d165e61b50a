"""The second-order examples run with small settings and print what they promise."""

import numpy as np
import pytest

from conftest import load_script


def test_logistic_second_order_methods_agree(capsys):
  results = load_script("examples/logistic_second_order.py").main(
      ["--classes", "3", "--tol", "1e-6"])
  out = capsys.readouterr().out
  for name in ("lbfgs", "newton", "hessian_free"):
    assert name in out, out
  assert "f evals" in out and "test acc" in out and "not converged" not in out
  values = [float(r.value) for r in results.values()]
  np.testing.assert_allclose(values, values[0], rtol=1e-7)  # |g| <= 1e-6, l2 = 1e-3
  assert all(bool(r.converged) for r in results.values())
  assert int(results["newton"].num_steps) < int(results["lbfgs"].num_steps)


@pytest.mark.parametrize("extra", [[], ["--cg-backtracking"]])
def test_hessian_free_autoencoder_learns(capsys, extra):
  errors = load_script("examples/hessian_free_autoencoder.py").main(
      ["--iterations", "4", "--cg-max-iters", "10", "--train-size", "200",
       "--sizes", "64,16,8,16,64"] + extra)
  out = capsys.readouterr().out
  assert "HF train" in out and "Adam train" in out
  assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 4
  assert errors["hf_train"][-1] < 0.7 * errors["initial"], out
  assert errors["adam_train"][-1] < errors["initial"], out

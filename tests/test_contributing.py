"""CONTRIBUTING.md's worked example runs and is what it claims: its Lion, written with
``gtx.leafwise`` and ``gtx.hyperparameters``, takes Optax's ``lion`` steps (the oracle)
over 50 jitted steps on a tree of mixed shapes, and rejects bad hyperparameters."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

TEXT = (pathlib.Path(__file__).resolve().parent.parent / "CONTRIBUTING.md").read_text()


def example():
  (code,) = re.findall(r"^```python\n(.*?)^```", TEXT, re.S | re.M)
  namespace = {"__name__": "__contributing__"}
  exec(compile(code, "CONTRIBUTING.md", "exec"), namespace)  # pylint: disable=exec-used
  return namespace


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_worked_example_takes_optax_lion_steps(dtype):
  lion = example()["lion"]
  with jax.enable_x64(dtype == jnp.float64):
    rng = np.random.default_rng(0)
    shapes = {"scalar": (), "vector": (3,), "matrix": (2, 3), "cube": (2, 2, 3)}
    params = {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in shapes.items()}
    ours = lion(1e-2, b1=0.8, b2=0.95)
    theirs = optax.lion(1e-2, b1=0.8, b2=0.95, weight_decay=0.0)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    p_ours = p_theirs = params
    step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(50):
      grads = jax.tree.map(lambda p: jnp.sin(3 * p) + p * p, p_ours)
      u_ours, s_ours = step_ours(grads, s_ours, p_ours)
      u_theirs, s_theirs = step_theirs(grads, s_theirs, p_theirs)
      for k in shapes:
        np.testing.assert_allclose(u_ours[k], u_theirs[k], rtol=1e-6, atol=1e-7,
                                   err_msg=f"{k} step {t}")
      p_ours = jax.tree.map(lambda p, u: p + u, p_ours, u_ours)
      p_theirs = jax.tree.map(lambda p, u: p + u, p_theirs, u_theirs)


def test_worked_example_checks_its_hyperparameters():
  scale_by_lion = example()["scale_by_lion"]
  with pytest.raises(ValueError, match=r"^scale_by_lion: b1 must be in \[0, 1\], got 1.5"):
    scale_by_lion(b1=1.5)
  with pytest.raises(TypeError, match=r"^scale_by_lion: b2 must be a real number"):
    scale_by_lion(b2="0.99")

"""Shared fixtures: mixed-shape pytrees and a deterministic, params-dependent loss."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest


ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_script(relative_path):
  """Imports a script of the repository (``"examples/train_mlp.py"``) as a module, so a
  test can call its ``main(argv)``; registered in ``sys.modules`` (dataclasses look
  their module up there)."""
  path = ROOT / relative_path
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def eight_device_report(worker, *args):
  """Runs ``worker`` (a script next to the tests) in a subprocess with 8 simulated CPU
  devices, so the rest of the suite keeps one, and returns the JSON it printed on its
  ``REPORT `` line."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, str(worker), *map(str, args)], env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  line = next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))
  return json.loads(line[len("REPORT "):])


def make_params(dtype=jnp.float32, seed=0):
  """A pytree with a scalar, a vector, a matrix and a 3-D leaf, nested in dict/tuple."""
  rng = np.random.default_rng(seed)
  shapes = {"scalar": (), "vector": (5,), "nested": {"matrix": (4, 3), "cube": (2, 3, 4)}}
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), dtype), shapes,
                      is_leaf=lambda x: isinstance(x, tuple))


def loss(params):
  """A smooth non-convex loss whose gradient depends on the params (so trajectories
  diverge quickly if an optimizer's numerics differ)."""
  leaves = jax.tree.leaves(params)
  return sum(jnp.sum((i + 1) * (p - 0.5 * i) ** 2 + 0.3 * jnp.sin(3.0 * p))
             for i, p in enumerate(leaves))


@pytest.fixture
def params():
  return make_params()

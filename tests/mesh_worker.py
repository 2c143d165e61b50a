"""Runs examples/data_parallel.py's layouts on 8 simulated CPU devices; prints JSON.

Started by tests/test_mesh.py in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the rest of the suite keeps one
device). It measures, for each layout, how far params, optimizer state and losses are
from the one-device run, and records the shardings the jitted steps left on the params
and on the state, next to those :func:`gradtx.state_shardings` promised.
"""

import importlib.util
import json
import pathlib
import sys

import jax
import numpy as np
from jax.sharding import NamedSharding

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def load_example():
  spec = importlib.util.spec_from_file_location("data_parallel", EXAMPLES / "data_parallel.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def max_difference(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def specs(tree):
  return {jax.tree_util.keystr(path): str(leaf.sharding.spec)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def main():
  dp = load_example()
  report = {"devices": len(jax.devices()), "steps": STEPS, "layouts": {}}
  runs = dp.main(["--steps", str(STEPS)])  # prints the example's own report to stdout
  one_params, one_state, one_losses = runs["one_device"]
  for layout in dp.LAYOUTS:
    params, opt_state, losses = runs[layout]
    tx = dp.make_optimizer(STEPS)
    params_sharding, promised, _ = dp.shardings(layout, tx, dp.init_params(jax.random.key(0)))
    kept = [leaf.sharding.is_equivalent_to(expected, leaf.ndim) for leaf, expected in
            zip(jax.tree.leaves(opt_state), jax.tree.leaves(promised), strict=True)]
    params_kept = [leaf.sharding.is_equivalent_to(params_sharding[k], leaf.ndim)
                   for k, leaf in params.items()]
    lookahead = opt_state[1]
    adam = lookahead.fast_state[0]
    # A bare jax.jit(tx.init) on placed params, without out_shardings: the protocol
    # promises that this already shards the state like the params.
    placed = jax.device_put(dp.init_params(jax.random.key(0)), params_sharding)
    bare = jax.jit(tx.init)(placed)[1]
    report["layouts"][layout] = {
        "params_difference": max_difference(params, one_params),
        "state_difference": max_difference(opt_state, one_state),
        "loss_difference": max_difference(losses, one_losses),
        "state_shardings_as_promised": all(kept),
        "params_shardings_kept": all(params_kept),
        "all_named": all(isinstance(leaf.sharding, NamedSharding)
                         for leaf in jax.tree.leaves((params, opt_state))),
        "params": specs(params),
        "mu": specs(adam.mu),
        "nu": specs(adam.nu),
        "slow_weights": specs(lookahead.slow_weights),
        "bare_init_like_params": {
            field: all(leaf.sharding.is_equivalent_to(params_sharding[k], leaf.ndim)
                       for k, leaf in tree.items())
            for field, tree in [("mu", bare.fast_state[0].mu), ("nu", bare.fast_state[0].nu),
                                ("slow_weights", bare.slow_weights)]},
        "count": str(adam.count.sharding.spec),
        "mu_w1_shard_shape": list(adam.mu["w1"].addressable_shards[0].data.shape),
        "promised_by_helper": {jax.tree_util.keystr(path): str(s.spec) for path, s in
                               jax.tree_util.tree_leaves_with_path(promised)},
    }
  report["one_device_loss_first_last"] = [one_losses[0], one_losses[-1]]
  print("REPORT " + json.dumps(report))


if __name__ == "__main__":
  main()

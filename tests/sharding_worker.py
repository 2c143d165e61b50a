"""A bare ``jax.jit(tx.init)`` of every transform on 8 simulated CPU devices; prints JSON.

Started by tests/test_state_sharding.py in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the rest of the suite keeps one
device). The params live on a ``(4, 2)`` ``('data', 'model')`` mesh: a matrix split over
``data``, a matrix split over ``model``, a replicated vector and a replicated scalar.
For each transform it walks the state as :func:`gradtx.state_shardings` does and
records every per-param leaf whose sharding is not its param's:

* a subtree with the params' structure and the params' shapes (parts masked out by
  ``masked``/``partition`` may be missing): each leaf must have its param's sharding;
* a subtree with the params' structure whose leaves are all shaped ``(k, *param.shape)``
  for one ``k`` (L-BFGS's memory): each leaf must be sharded ``(None, *param_spec)``;
* a subtree with the params' structure whose leaves are all shaped
  ``(*param.shape, *extra)`` for one ``extra`` (the LSTM optimizer's hidden state): each
  leaf must be sharded ``(*param_spec, None, ...)``.

Every other leaf (counts, scalars, flattened state) is not promised a sharding.
"""

import json
import pathlib
import sys
import traceback

import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import gradtx as gtx
from gradtx._src.combine import MaskedNode

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_properties import TRANSFORMS  # noqa: E402

EXTRA = {
    "+lbfgs()": gtx.lbfgs,
    "+scale_by_lbfgs()": gtx.scale_by_lbfgs,
    "+scale_by_backtracking_linesearch(store_grad=True)":
        lambda: gtx.scale_by_backtracking_linesearch(10, store_grad=True),
    "+scale_by_zoom_linesearch()": lambda: gtx.scale_by_zoom_linesearch(10),
    "+scale_by_more_thuente_linesearch()": lambda: gtx.scale_by_more_thuente_linesearch(10),
    "+newton()": gtx.newton,
    "+hessian_free()": gtx.hessian_free,
}
# A control the check must catch: per-param state broadcast from a constant.
CONTROL = {"control/constant_zeros": lambda: gtx.GradientTransformation(
    lambda params: jax.tree.map(lambda p: jax.numpy.zeros(p.shape, p.dtype), params),
    lambda updates, state, params=None: (updates, state))}
NAMES = [*TRANSFORMS, *EXTRA, *CONTROL]


def make_params():
  # Key names matter: the registry's masks look for "scalar" and "nested" in the paths.
  mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
  specs = {"rows": P("data", None), "nested": {"cols": P(None, "model")},
           "vector": P(), "scalar": P()}
  values = {"rows": jax.numpy.arange(48.0).reshape(8, 6) / 48 - 0.5,
            "nested": {"cols": jax.numpy.arange(24.0).reshape(4, 6) / 24 - 0.25},
            "vector": jax.numpy.linspace(-1.0, 1.0, 6), "scalar": jax.numpy.asarray(0.3)}
  shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                           is_leaf=lambda x: isinstance(x, P))
  return jax.device_put(values, shardings), shardings


def _is_masked(x):
  return isinstance(x, MaskedNode)


def _is_array_like(x):
  return hasattr(x, "shape") and hasattr(x, "dtype")


def _match(state, params, shardings):
  """``[(kind, leaf, expected sharding)]`` if ``state`` has the params' structure with
  per-param or stacked per-param leaves, else None."""
  leaves, structure = jax.tree.flatten(state, is_leaf=_is_masked)
  if structure != jax.tree.structure(params):
    return None
  triples = [(s, p, sh) for s, p, sh in
             zip(leaves, jax.tree.leaves(params), jax.tree.leaves(shardings), strict=True)
             if not _is_masked(s)]
  if not triples or not all(_is_array_like(s) for s, _, _ in triples):
    return None
  if all(s.shape == p.shape for s, p, _ in triples):
    return [("same", s, sh) for s, _, sh in triples]
  leading = {s.shape[0] if s.ndim == p.ndim + 1 and s.shape[1:] == p.shape else None
             for s, p, _ in triples}
  if len(leading) == 1 and None not in leading:
    return [("stacked", s, NamedSharding(sh.mesh, P(None, *sh.spec)))
            for s, _, sh in triples]
  trailing = {s.shape[p.ndim:] if s.ndim > p.ndim and s.shape[:p.ndim] == p.shape else None
              for s, p, _ in triples}
  if len(trailing) == 1 and None not in trailing:
    return [("trailing", s,
             NamedSharding(sh.mesh, P(*sh.spec, *(None,) * (s.ndim - p.ndim))))
            for s, p, sh in triples]
  return None


def _children(node):
  leaves, _ = jax.tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)
  return leaves


def per_param_leaves(state, params, shardings):
  matched = _match(state, params, shardings)
  if matched is not None:
    return matched
  if _is_masked(state) or _is_array_like(state) or state is None:
    return []
  return [found for child in _children(state)
          for found in per_param_leaves(child, params, shardings)]


def describe(sharding):
  return str(sharding.spec) if isinstance(sharding, NamedSharding) else repr(sharding)


def check(tx, params, shardings):
  state = jax.jit(tx.init)(params)
  found = per_param_leaves(state, params, shardings)
  checked = {}
  for kind, _, _ in found:
    checked[kind] = checked.get(kind, 0) + 1
  wrong = [{"kind": kind, "shape": list(leaf.shape), "expected": describe(expected),
            "got": describe(leaf.sharding)}
           for kind, leaf, expected in found
           if not leaf.sharding.is_equivalent_to(expected, leaf.ndim)]
  return {"checked": checked, "wrong": wrong}


def main():
  params, shardings = make_params()
  report = {"devices": len(jax.devices()), "transforms": {}}
  for name, factory in {**TRANSFORMS, **EXTRA, **CONTROL}.items():
    try:
      report["transforms"][name] = check(factory(), params, shardings)
    except Exception:  # noqa: BLE001 -- reported per transform, the others still run
      report["transforms"][name] = {"error": traceback.format_exc()[-2000:]}
  print("REPORT " + json.dumps(report))


if __name__ == "__main__":
  main()

"""The coordinatewise LSTM optimizer of Andrychowicz et al. 2016.

"Learning to learn by gradient descent by gradient descent" (NeurIPS 2016, §2.1 and
Appendix A): the update of every coordinate of the optimizee is the output of one small
recurrent network, ``theta_{t+1} = theta_t + g_phi(grad_t)``. The network is a two-layer
LSTM with 20 hidden units per layer whose weights ``phi`` (the *meta-parameters*) are
shared across all coordinates, while each coordinate keeps its own hidden and cell state,
so the same ``phi`` optimises a problem of any size and shape.

Per coordinate and step, with ``p = 10``:

* preprocessing (Appendix A): the gradient ``g`` becomes two inputs,
  ``(log|g| / p, sign g)`` if ``|g| >= exp(-p)``, else ``(-1, exp(p) * g)``;
* two LSTM layers (gates in the order input, forget, cell, output):
  ``i, f, z, o = split(W_x x + W_h h + b)``, ``c = s(f) c + s(i) tanh(z)``,
  ``h = s(o) tanh(c)``;
* output: ``update = output_scale * (w_out . h_2 + b_out)`` with ``output_scale = 0.1``.

The update is added to the params as it is (it is not a gradient to be negated), so the
transform is a complete optimizer: ``params = apply_updates(params, updates)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import gradtx as gtx
# Not public API (yet): hyperparameter checks, the per-leaf rule lifter and schedule support.

MetaParams = dict[str, jax.Array]

NUM_INPUTS = 2  # the preprocessed (log-magnitude, sign) pair


class LSTMOptimizerState(NamedTuple):
  """Per-coordinate LSTM state: each leaf is shaped ``param.shape + (layers, hidden)``.

  Attributes:
    hidden: the hidden state ``h`` of every layer, for every coordinate.
    cell: the cell state ``c`` of every layer, for every coordinate.
  """

  hidden: Any
  cell: Any


@gtx.hyperparameters(hidden_size="int >= 1", num_layers="int >= 1", dtype="dtype")
def init_meta_params(key: jax.Array, hidden_size: int = 20, num_layers: int = 2,
                     dtype: Any = jnp.float32) -> MetaParams:
  """Fresh meta-parameters: a flat dict of arrays (a pytree, so it can be meta-trained).

  ``w_x_l`` (inputs, 4*hidden), ``w_h_l`` (hidden, 4*hidden) and ``b_l`` (4*hidden) for
  each layer ``l``, and the output layer ``w_out`` (hidden,), ``b_out`` (). Weights are
  uniform in ``+-1/sqrt(hidden)`` (the usual LSTM initialisation), the forget gates' bias
  is 1 so that the initial memory is kept, and the output bias is 0.
  """
  bound = 1.0 / math.sqrt(hidden_size)
  keys = jax.random.split(key, 2 * num_layers + 1)
  uniform = lambda k, shape: jax.random.uniform(k, shape, dtype, -bound, bound)  # noqa: E731
  forget_bias = jnp.zeros(4 * hidden_size, dtype).at[hidden_size:2 * hidden_size].set(1.0)
  meta_params = {}
  for layer in range(num_layers):
    inputs = NUM_INPUTS if layer == 0 else hidden_size
    meta_params[f"w_x_{layer}"] = uniform(keys[2 * layer], (inputs, 4 * hidden_size))
    meta_params[f"w_h_{layer}"] = uniform(keys[2 * layer + 1], (hidden_size, 4 * hidden_size))
    meta_params[f"b_{layer}"] = forget_bias
  meta_params["w_out"] = uniform(keys[-1], (hidden_size,))
  meta_params["b_out"] = jnp.zeros([], dtype)
  return meta_params


def architecture(meta_params: MetaParams) -> tuple[int, int]:
  """``(num_layers, hidden_size)`` of meta-parameters, checked for consistency.

  Raises:
    ValueError: the dict is not meta-parameters of a coordinatewise LSTM optimizer.
  """
  keys = set(meta_params) if isinstance(meta_params, dict) else set()
  num_layers = 0
  while f"w_x_{num_layers}" in keys:
    num_layers += 1
  expected = {f"{name}_{layer}" for layer in range(num_layers)
              for name in ("w_x", "w_h", "b")} | {"w_out", "b_out"}
  if num_layers == 0 or keys != expected:
    raise ValueError(
        "lstm_optimizer: meta_params must be the dict made by init_meta_params (or "
        f"pretrained, or meta_train), with keys {sorted(expected) or 'w_x_0, ...'}; "
        f"got {sorted(keys) if keys else type(meta_params).__name__}")
  hidden_size = jnp.shape(meta_params["w_out"])[0] if jnp.ndim(meta_params["w_out"]) else 0
  shapes = {"w_out": (hidden_size,), "b_out": ()}
  for layer in range(num_layers):
    inputs = NUM_INPUTS if layer == 0 else hidden_size
    shapes.update({f"w_x_{layer}": (inputs, 4 * hidden_size),
                   f"w_h_{layer}": (hidden_size, 4 * hidden_size),
                   f"b_{layer}": (4 * hidden_size,)})
  for name, shape in shapes.items():
    if tuple(jnp.shape(meta_params[name])) != shape:
      raise ValueError(f"lstm_optimizer: meta_params[{name!r}] must have shape {shape} "
                       f"(hidden_size {hidden_size}), got {tuple(jnp.shape(meta_params[name]))}")
  return num_layers, hidden_size


def preprocess(g: jax.Array, p: Any = 10.0) -> jax.Array:
  """The paper's gradient preprocessing, ``(..., 2)`` from ``(...)``.

  ``(log|g|/p, sign g)`` where ``|g| >= exp(-p)``, else ``(-1, exp(p) g)``. Both parts are
  bounded for every finite ``g`` (the first by ``log(max float)/p``); an infinite ``g`` is
  read as the largest finite magnitude with its sign; a NaN stays NaN (the second input),
  so that a NaN gradient shows in the update instead of passing silently.
  """
  magnitude = jnp.abs(g)
  large = magnitude >= jnp.exp(-p)
  # Finite in both branches, so that neither value nor derivative is inf or NaN there.
  finite = jnp.minimum(jnp.where(large, magnitude, 1.0), jnp.finfo(g.dtype).max)
  log_part = jnp.where(large, jnp.log(finite) / p, -1.0)
  sign_part = jnp.where(large, jnp.sign(g), jnp.exp(p) * g)
  return jnp.stack([log_part.astype(g.dtype), sign_part.astype(g.dtype)], axis=-1)


def lstm_step(meta_params: MetaParams, x: jax.Array, hidden: jax.Array,
              cell: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One step of the stacked LSTM on a batch of coordinates.

  ``x`` is ``(n, inputs)``, ``hidden`` and ``cell`` are ``(n, layers, hidden_size)``.
  Returns the top layer's output ``(n, hidden_size)`` and the new hidden and cell states.
  """
  num_layers = hidden.shape[-2]
  new_hidden, new_cell = [], []
  for layer in range(num_layers):
    w_x, w_h, b = (meta_params[f"{name}_{layer}"].astype(x.dtype)
                   for name in ("w_x", "w_h", "b"))
    gates = x @ w_x + hidden[:, layer] @ w_h + b
    i, f, z, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * cell[:, layer] + jax.nn.sigmoid(i) * jnp.tanh(z)
    x = jax.nn.sigmoid(o) * jnp.tanh(c)
    new_hidden.append(x)
    new_cell.append(c)
  return x, jnp.stack(new_hidden, axis=1), jnp.stack(new_cell, axis=1)


@gtx.hyperparameters(p="(0, inf)", output_scale="(0, inf)")
def lstm_optimizer(meta_params: MetaParams, p: float = 10.0,
                   output_scale: float = 0.1) -> gtx.GradientTransformation:
  """The coordinatewise two-layer LSTM optimizer (Andrychowicz et al. 2016).

  ``u = output_scale * (w_out . LSTM_phi(preprocess(g)) + b_out)`` per coordinate, the
  LSTM's state kept per coordinate in :class:`LSTMOptimizerState`; the emitted ``u`` is
  the step itself (add it to the params, do not follow with a learning rate). Works on
  any pytree of params, under ``jit``, ``vmap``, ``grad`` (with respect to the
  meta-parameters too: that is how :func:`~gradtx.learned.meta_train` trains them) and
  ``lax.scan``, and in chains, e.g. ``chain(clip_by_global_norm(1.0),
  lstm_optimizer(pretrained("quadratic")))``.

  The update of a coordinate is bounded by ``output_scale * (|w_out|_1 + |b_out|)``
  whatever the gradient: zero, tiny (1e-30), huge (1e30) and infinite gradients give
  finite updates (an infinite one is read as the largest finite magnitude). A NaN
  gradient gives a NaN update in that coordinate (and its LSTM state); wrap the optimizer
  in :func:`gradtx.apply_if_finite` to skip such steps.

  Args:
    meta_params: the LSTM's weights, from :func:`init_meta_params`,
      :func:`~gradtx.learned.meta_train` or :func:`~gradtx.learned.pretrained`.
    p: the preprocessing's threshold exponent (the paper's ``p = 10``); must match the
      value the meta-parameters were trained with.
    output_scale: the factor on the network's output (the paper's 0.1); must match the
      value the meta-parameters were trained with.
  """
  num_layers, hidden_size = architecture(meta_params)

  def init(param):
    # Zeros computed from the param, so that the state takes the param's sharding.
    param = jnp.asarray(param)
    dtype = jnp.promote_types(param.dtype, jnp.float32)
    zeros = gtx.tree_utils.tree_zeros_like(param, dtype)[..., None, None]
    hidden = jnp.broadcast_to(zeros, (*param.shape, num_layers, hidden_size))
    return hidden, gtx.tree_utils.tree_zeros_like(hidden)

  def rule(g, hidden, cell, *, p, output_scale):
    shape = g.shape
    x = preprocess(g.reshape(-1), p)
    top, hidden, cell = lstm_step(meta_params, x,
                                  hidden.reshape(-1, num_layers, hidden_size),
                                  cell.reshape(-1, num_layers, hidden_size))
    w_out, b_out = (meta_params[name].astype(g.dtype) for name in ("w_out", "b_out"))
    update = output_scale * (top @ w_out + b_out)
    return (update.reshape(shape), hidden.reshape(*shape, num_layers, hidden_size),
            cell.reshape(*shape, num_layers, hidden_size))

  return gtx.leafwise("lstm_optimizer", rule, state=LSTMOptimizerState, init=init,
                      hyperparams=dict(p=p, output_scale=output_scale))

"""The hierarchical RNN learned optimizer of Wichrowska et al. 2017.

"Learned Optimizers that Scale and Generalize" (ICML 2017, §3): three levels of small
GRUs whose weights ``phi`` (the *meta-parameters*) are shared by every problem: one GRU
state per parameter coordinate, one per tensor (a leaf of the params' pytree) and one
global. The inputs are invariant to the gradients' scale, and the network outputs a
mixture over momentum timescales (the direction) and a change of a per-coordinate log
learning rate. This is a JAX transcription of the paper's design, simplified where its
reference code (tensorflow/models, research/learned_optimizer) has many options: fixed
momentum timescales, one running second moment, attention over the timescales as the
direction.

Per coordinate and step ``t = 1, 2, ...`` (``beta = (0.5, 0.9, 0.99, 0.999, 0.9999)``,
``K = 5``, ``beta_v = 0.999``, ``eps = 1e-8``; ``mean_T`` is the mean over the
coordinates of the coordinate's tensor):

* ``g = clip(g, -C, C)`` with ``C = sqrt(max float) * 1e-4`` (so that ``g**2`` is finite);
* ``nu = beta_v nu + (1 - beta_v) g**2`` and ``s = 1 / (sqrt(nu / (1 - beta_v**t)) + eps)``;
* ``mu_k = beta_k mu_k + (1 - beta_k) g`` and ``d_k = s mu_k / (1 - beta_k**t)``: the
  momentum at timescale ``k``, normalised by the gradient's running RMS;
* inputs ``x = (g s, d_1, ..., d_K, l - mean_T(l))``, the last the relative log
  learning rate;
* the per-parameter GRU, biased by the previous tensor and global states:
  ``h0 = GRU_0(x, h0; h1 A_01 + h2 A_02)``;
* the per-tensor GRU, fed its parameters' mean new state:
  ``h1 = GRU_1(mean_T(h0), h1; h2 A_12)``;
* the global GRU, fed the tensors' mean new state: ``h2 = GRU_2(mean over tensors(h1),
  h2)``;
* outputs: attention ``a = softmax(h0 W_att + b_att)`` over the timescales, the log
  learning rate ``l = clip(l + h0 w_lr + b_lr, log 1e-8, log 1)``, and the update
  ``u = -exp(l) sum_k a_k d_k``.

``GRU(x, h; c)`` is ``z = sigmoid(x W_z + h U_z + b_z + c_z)``,
``r = sigmoid(x W_r + h U_r + b_r + c_r)``,
``n = tanh(x W_n + (r h) U_n + b_n + c_n)``, ``h' = (1 - z) h + z n``, with
``W = [W_z W_r W_n]`` stored as ``(inputs, 3 * hidden)`` (and ``U``, ``b``, ``c`` alike).

The hidden states start at learned vectors ``h0_init``, ``h1_init``, ``h2_init`` and the
log learning rate at a learned scalar ``log_lr_init``. With the output weights at zero
(as :func:`init_hierarchical_meta_params` makes them) the untrained optimizer is an
Adam-like rule: ``exp(log_lr_init)`` times a fixed mixture of normalised momenta, mostly
the ``0.9`` one.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx

MetaParams = dict[str, jax.Array]

DECAYS = (0.5, 0.9, 0.99, 0.999, 0.9999)
"""The momentum timescales ``beta_k`` (the paper's §3.2)."""
BETA_V = 0.999
EPS = 1e-8
LOG_LR_RANGE = (math.log(1e-8), 0.0)
NUM_INPUTS = len(DECAYS) + 2  # g s, d_1..d_K, relative log learning rate
_KIND_KEY = "gru0_w_x"  # the key that tells hierarchical meta-parameters from the LSTM's


class HierarchicalOptimizerState(NamedTuple):
  """The hierarchical RNN optimizer's state.

  Attributes:
    count: the number of steps taken (int32).
    mu: per leaf, the momenta at every timescale, ``param.shape + (K,)``.
    nu: per leaf, the running mean square gradient, ``param.shape``.
    log_lr: per leaf, the log learning rates, ``param.shape``.
    hidden: per leaf, the per-parameter GRU states, ``param.shape + (hidden_0,)``.
    tensor_hidden: per leaf, the per-tensor GRU state, ``(hidden_1,)``.
    global_hidden: the global GRU state, ``(hidden_2,)``.
  """

  count: jax.Array
  mu: Any
  nu: Any
  log_lr: Any
  hidden: Any
  tensor_hidden: Any
  global_hidden: jax.Array


def _shapes(sizes: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
  h0, h1, h2 = sizes
  k = len(DECAYS)
  return {
      "gru0_w_x": (NUM_INPUTS, 3 * h0), "gru0_w_h": (h0, 3 * h0), "gru0_b": (3 * h0,),
      "tensor_to_gru0": (h1, 3 * h0), "global_to_gru0": (h2, 3 * h0),
      "gru1_w_x": (h0, 3 * h1), "gru1_w_h": (h1, 3 * h1), "gru1_b": (3 * h1,),
      "global_to_gru1": (h2, 3 * h1),
      "gru2_w_x": (h1, 3 * h2), "gru2_w_h": (h2, 3 * h2), "gru2_b": (3 * h2,),
      "w_att": (h0, k), "b_att": (k,), "w_lr": (h0,), "b_lr": (),
      "h0_init": (h0,), "h1_init": (h1,), "h2_init": (h2,), "log_lr_init": (),
  }


def init_hierarchical_meta_params(key: jax.Array, hidden_sizes: tuple[int, int, int] = (
    10, 20, 20), learning_rate: float = 1e-2, dtype: Any = jnp.float32) -> MetaParams:
  """Fresh meta-parameters: a flat dict of arrays whose untrained rule is Adam-like.

  ``hidden_sizes`` are the per-parameter, per-tensor and global GRUs' sizes (the paper's
  10, 20, 20). GRU input and recurrent weights and the coupling matrices between levels
  are normal with standard deviation ``0.5 / sqrt(fan_in)`` (the reference code's scale
  0.5), GRU biases and initial states zero. The outputs start neutral: ``w_att``,
  ``w_lr`` and ``b_lr`` zero, ``b_att`` 3 on the 0.9 timescale and 0 elsewhere (weights
  0.83 and 0.04 each), ``log_lr_init = log(learning_rate)``.
  """
  if (len(hidden_sizes) != 3 or not all(isinstance(s, int) and s >= 1 for s in hidden_sizes)):
    raise ValueError("init_hierarchical_meta_params: hidden_sizes must be three integers "
                     f">= 1, got {hidden_sizes!r}")
  if not learning_rate > 0:
    raise ValueError("init_hierarchical_meta_params: learning_rate must be in (0, inf), "
                     f"got {learning_rate!r}")
  shapes = _shapes(tuple(hidden_sizes))
  random = ("gru0_w_x", "gru0_w_h", "tensor_to_gru0", "global_to_gru0", "gru1_w_x",
            "gru1_w_h", "global_to_gru1", "gru2_w_x", "gru2_w_h")
  keys = dict(zip(random, jax.random.split(key, len(random))))
  meta_params = {}
  for name, shape in shapes.items():
    if name in keys:
      meta_params[name] = (0.5 / math.sqrt(shape[0])) * jax.random.normal(
          keys[name], shape, dtype)
    else:
      meta_params[name] = jnp.zeros(shape, dtype)
  meta_params["b_att"] = meta_params["b_att"].at[DECAYS.index(0.9)].set(3.0)
  meta_params["log_lr_init"] = jnp.asarray(math.log(learning_rate), dtype)
  return meta_params


def is_hierarchical(meta_params: Any) -> bool:
  """Whether ``meta_params`` are (by their keys) a hierarchical optimizer's."""
  return isinstance(meta_params, dict) and _KIND_KEY in meta_params


def hierarchical_architecture(meta_params: MetaParams) -> tuple[int, int, int]:
  """The GRUs' sizes ``(hidden_0, hidden_1, hidden_2)``, checked for consistency.

  Raises:
    ValueError: the dict is not meta-parameters of the hierarchical optimizer.
  """
  sizes = tuple(jnp.shape(meta_params[name])[0] if name in meta_params and jnp.ndim(
      meta_params[name]) == 1 else 0 for name in ("h0_init", "h1_init", "h2_init"))
  expected = _shapes(sizes)
  if not isinstance(meta_params, dict) or set(meta_params) != set(expected):
    got = sorted(meta_params) if isinstance(meta_params, dict) else type(meta_params).__name__
    raise ValueError("hierarchical_optimizer: meta_params must be the dict made by "
                     "init_hierarchical_meta_params (or pretrained('hierarchical'), or "
                     f"meta_train(optimizer='hierarchical')), with keys {sorted(expected)}; "
                     f"got {got}")
  for name, shape in expected.items():
    if tuple(jnp.shape(meta_params[name])) != shape:
      raise ValueError(f"hierarchical_optimizer: meta_params[{name!r}] must have shape "
                       f"{shape} (hidden sizes {sizes}), got {tuple(jnp.shape(meta_params[name]))}")
  return sizes


def gru(x, h, w_x, w_h, b, bias):
  """One GRU step (the module docstring's ``GRU(x, h; c)``) on rows of ``x`` and ``h``."""
  size = h.shape[-1]
  pre = x @ w_x + b + bias
  rec = h @ w_h
  z = jax.nn.sigmoid(pre[..., :size] + rec[..., :size])
  r = jax.nn.sigmoid(pre[..., size:2 * size] + rec[..., size:2 * size])
  n = jnp.tanh(pre[..., 2 * size:] + (r * h) @ w_h[:, 2 * size:])
  return (1 - z) * h + z * n


def _mean_rows(x):
  """Mean over axis 0, zero (not NaN) for an empty leaf."""
  return jnp.sum(x, axis=0) / max(x.shape[0], 1)


def _check_tree(updates, state) -> None:
  leaves, treedef = jax.tree_util.tree_flatten_with_path(updates)
  state_def = jax.tree.structure(state.nu)
  if treedef != state_def:
    raise ValueError("hierarchical_optimizer: the tree structure of the updates differs from "
                     f"the tree structure of the state (made by init):\n  updates: {treedef}"
                     f"\n  state:   {state_def}")
  for (path, leaf), nu in zip(leaves, jax.tree.leaves(state.nu)):
    if jnp.shape(leaf) != jnp.shape(nu):
      raise ValueError(f"hierarchical_optimizer: the update at {jax.tree_util.keystr(path)} "
                       f"has shape {jnp.shape(leaf)}, its state shape {jnp.shape(nu)}")
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise TypeError(f"hierarchical_optimizer: the update at {jax.tree_util.keystr(path)} "
                      f"has dtype {jnp.result_type(leaf)}; it must be a float array")


def hierarchical_optimizer(meta_params: MetaParams) -> gtx.GradientTransformation:
  """The hierarchical RNN learned optimizer (Wichrowska et al. 2017).

  The rule is the module docstring's; the emitted update is the step itself (add it to
  the params, do not follow with a learning rate). Works on any pytree of float params,
  under ``jit``, ``vmap``, ``grad`` (with respect to the meta-parameters too: that is how
  :func:`~gradtx.learned.meta_train` with ``optimizer="hierarchical"`` trains them) and
  ``lax.scan``. Each leaf is computed in its dtype promoted to at least float32 and the
  update cast back to it; the global state in the widest of them.

  The update's magnitude is at most ``max_k |d_k|`` (``exp(l) <= 1`` and the attention
  sums to 1), and ``|d_k| <= C / eps`` is finite whatever the gradients: zero, tiny
  (1e-30), huge (1e30) and infinite gradients give finite updates and states (an
  infinite one is read as ``C``). ``d_k`` is of order one while the gradients' scale is
  steady; it grows when they shrink by orders of magnitude faster than the timescale
  ``k`` forgets (``nu`` forgets at ``beta_v = 0.999``, the 0.9999 momentum slower), which
  the learned attention can weigh down. A NaN gradient makes the update and
  state NaN (through the means, in every leaf); wrap the optimizer in
  :func:`gradtx.apply_if_finite` to skip such steps.

  Args:
    meta_params: the networks' weights, from :func:`init_hierarchical_meta_params`,
      :func:`~gradtx.learned.meta_train` (``optimizer="hierarchical"``) or
      ``pretrained("hierarchical")``.
  """
  h0_size, h1_size, h2_size = hierarchical_architecture(meta_params)
  decays = np.asarray(DECAYS)

  def init(params):
    def leaf_init(p):
      p = jnp.asarray(p)
      if not jnp.issubdtype(p.dtype, jnp.floating):
        raise TypeError(f"hierarchical_optimizer: params must be float arrays, got {p.dtype}")
      dtype = jnp.promote_types(p.dtype, jnp.float32)
      zeros = gtx.tree_utils.tree_zeros_like(p, dtype)  # takes the param's sharding
      init_lr = meta_params["log_lr_init"].astype(dtype)
      return (jnp.broadcast_to(zeros[..., None], (*p.shape, len(DECAYS))), zeros,
              zeros + init_lr,
              zeros[..., None] + meta_params["h0_init"].astype(dtype),
              meta_params["h1_init"].astype(dtype))

    per_leaf = jax.tree.map(leaf_init, params)
    treedef = jax.tree.structure(params)
    fields = [treedef.unflatten(column) for column in zip(*jax.tree.leaves(
        per_leaf, is_leaf=lambda x: isinstance(x, tuple)))] if treedef.num_leaves else [
            params] * 5
    global_dtype = jnp.result_type(jnp.float32, *jax.tree.leaves(params))
    return HierarchicalOptimizerState(jnp.zeros([], jnp.int32), *fields,
                                      meta_params["h2_init"].astype(global_dtype))

  def update(updates, state, params=None):
    del params
    _check_tree(updates, state)
    count = jnp.where(state.count < jnp.iinfo(jnp.int32).max, state.count + 1, state.count)
    h2 = state.global_hidden
    outputs = []
    for g, mu, nu, log_lr, h0, h1 in zip(*(jax.tree.leaves(t) for t in (
        updates, state.mu, state.nu, state.log_lr, state.hidden, state.tensor_hidden))):
      dtype = nu.dtype
      w = {name: value.astype(dtype) for name, value in meta_params.items()}
      t = count.astype(dtype)
      limit = math.sqrt(float(jnp.finfo(dtype).max)) * 1e-4
      g = jnp.clip(g.astype(dtype), -limit, limit)
      nu = BETA_V * nu + (1 - BETA_V) * g**2
      s = 1 / (jnp.sqrt(nu / (1 - BETA_V**t)) + EPS)
      mu = decays.astype(dtype) * mu + (1 - decays.astype(dtype)) * g[..., None]
      d = s[..., None] * mu / (1 - decays.astype(dtype)**t)
      flat = lambda x, trailing: x.reshape(-1, *trailing)  # noqa: E731
      relative = log_lr - _mean_rows(log_lr.reshape(-1))
      x = jnp.concatenate([flat(g * s, (1,)), flat(d, (len(DECAYS),)), flat(relative, (1,))],
                          axis=-1)
      h2_leaf = h2.astype(dtype)
      bias0 = h1 @ w["tensor_to_gru0"] + h2_leaf @ w["global_to_gru0"]
      new_h0 = gru(x, flat(h0, (h0_size,)), w["gru0_w_x"], w["gru0_w_h"], w["gru0_b"], bias0)
      new_h1 = gru(_mean_rows(new_h0), h1, w["gru1_w_x"], w["gru1_w_h"], w["gru1_b"],
                   h2_leaf @ w["global_to_gru1"])
      attention = jax.nn.softmax(new_h0 @ w["w_att"] + w["b_att"], axis=-1)
      new_log_lr = jnp.clip(flat(log_lr, ()) + new_h0 @ w["w_lr"] + w["b_lr"], *LOG_LR_RANGE)
      step = -jnp.exp(new_log_lr) * jnp.sum(attention * flat(d, (len(DECAYS),)), axis=-1)
      outputs.append((step.reshape(g.shape),
                      mu, nu, new_log_lr.reshape(g.shape), new_h0.reshape(h0.shape), new_h1))
    treedef = jax.tree.structure(updates)
    if outputs:
      steps, mus, nus, log_lrs, h0s, h1s = zip(*outputs)
      mean_h1 = jnp.mean(jnp.stack([h.astype(h2.dtype) for h in h1s]), axis=0)
      w2 = {name: meta_params[name].astype(h2.dtype) for name in ("gru2_w_x", "gru2_w_h",
                                                                   "gru2_b")}
      h2 = gru(mean_h1, h2, w2["gru2_w_x"], w2["gru2_w_h"], w2["gru2_b"], 0)
      steps = [s.astype(jnp.result_type(u)) for s, u in zip(steps, jax.tree.leaves(updates))]
      unflatten = lambda xs: treedef.unflatten(list(xs))  # noqa: E731
      new_state = HierarchicalOptimizerState(count, unflatten(mus), unflatten(nus),
                                             unflatten(log_lrs), unflatten(h0s),
                                             unflatten(h1s), h2)
      return unflatten(steps), new_state
    return updates, state._replace(count=count)

  return gtx.GradientTransformation(init, update)


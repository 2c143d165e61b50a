"""gtx.losses against optax.losses 0.2.8: the same public names (in ``gtx.losses`` and
at the top level), signatures, defaults and errors, and the same values, output dtypes
and gradients on random inputs of several shapes, in float32 and float64, including the
edge cases Optax documents (``-inf`` logits, masked classes and lists, fully masked
examples, zero targets, extreme logits, ties at the kinks of hinge and Huber losses).

Oracle: Optax 0.2.8 on the same inputs, its loss and gradient compiled in the same
jitted computation as gtx's (one compilation per loss and dtype). gtx computes each loss
with the same sequence of floating-point operations, and the results agree bitwise but
for multiclass_sparsemax_loss (1 ulp); the tolerances are a few ulps.

One departure, tested against Optax's own two-channel dice loss:
``binary_dice_loss(apply_sigmoid=False)`` accepts binary probabilities, which Optax
0.2.8 rejects.
"""

import inspect
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np
import optax
import pytest

import gradtx as gtx

OPTAX_NAMES = {n for n in dir(optax.losses) if not n.startswith("_")}


class Call(NamedTuple):
  args: tuple
  kwargs: dict
  argnums: tuple  # the float arguments to differentiate sum(loss) with respect to
  eager: bool  # not traceable (a check on the values): run eagerly, not under jit


def call(*args, argnums=(0,), eager=False, **kwargs):
  """One call of a loss: positional and keyword arguments, and which to differentiate."""
  return Call(args, kwargs, argnums, eager)


class Inputs:
  """Random inputs in one dtype, drawn from a fixed seed."""

  def __init__(self, dtype, seed=0):
    self.dtype = jnp.dtype(dtype)
    self.rng = np.random.default_rng(seed)

  def normal(self, *shape, scale=1.0):
    return jnp.asarray(scale * self.rng.normal(size=shape), self.dtype)

  def uniform(self, *shape, low=0.0, high=1.0):
    return jnp.asarray(self.rng.uniform(low, high, size=shape), self.dtype)

  def ints(self, high, *shape):
    return jnp.asarray(self.rng.integers(0, high, size=shape))

  def signs(self, *shape):
    return jnp.asarray(self.rng.choice([-1.0, 1.0], size=shape), self.dtype)

  def mask(self, *shape, p=0.7):
    return jnp.asarray(self.rng.uniform(size=shape) < p)

  def probs(self, *shape, axis=-1):
    return jax.nn.softmax(self.normal(*shape), axis=axis)

  def log_probs(self, *shape, axis=-1):
    return jax.nn.log_softmax(self.normal(*shape), axis=axis)

  def one_hot(self, *shape):
    return jax.nn.one_hot(self.ints(shape[-1], *shape[:-1]), shape[-1], dtype=self.dtype)

  def array(self, values):
    return jnp.asarray(values, self.dtype)


# --- the cases: name -> a function of Inputs giving the calls to compare ---------------


def _regression(x):
  calls = [call(x.normal(*s), x.normal(*s), argnums=(0, 1)) for s in [(), (5,), (3, 4)]]
  calls.append(call(x.normal(2, 3, 4)))  # targets None: zeros
  return calls


def _huber(x):
  delta_ties = x.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])  # |e| = delta: a kink
  return [call(x.normal(3, 4, scale=2.0), x.normal(3, 4), argnums=(0, 1)),
          call(x.normal(6, scale=2.0), delta=0.5),
          call(delta_ties), call(delta_ties, delta=0.5)]


def _log_cosh(x):
  return [call(x.normal(3, 4), x.normal(3, 4), argnums=(0, 1)),
          call(x.array([-80.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 80.0]))]


def _cosine(x):
  where = x.mask(4, 3).at[:, 0].set(True)
  zero = x.normal(3, 4).at[1].set(0.0)
  return [call(x.normal(4, 3), x.normal(4, 3), argnums=(0, 1)),
          call(x.normal(2, 3, 5), x.normal(2, 3, 5), argnums=(0, 1), axis=0),
          call(x.normal(2, 3, 5), x.normal(2, 3, 5), argnums=(0, 1), axis=(1, 2)),
          call(x.normal(4, 3), x.normal(4, 3), argnums=(0, 1), where=where),
          call(x.normal(5), x.normal(5), argnums=(0, 1), epsilon=0.5),
          call(zero, x.normal(3, 4), argnums=(0, 1)),  # a zero vector: NaN
          call(zero, x.normal(3, 4), argnums=(0, 1), epsilon=1e-12)]


def _softmax_ce(x):
  neg_inf = x.normal(3, 4).at[0, 1].set(-jnp.inf).at[2, 3].set(-jnp.inf)
  return [call(x.normal(5), x.probs(5)),
          call(x.normal(3, 4), x.one_hot(3, 4), argnums=(0, 1)),
          call(x.normal(2, 3, 4), x.probs(2, 3, 4), argnums=(0, 1)),
          call(x.normal(3, 4), x.probs(3, 4, axis=0), axis=0),
          call(x.normal(2, 3, 4), x.probs(2, 3, 4), axis=(1, 2)),
          call(x.normal(3, 5), x.one_hot(3, 5), where=x.mask(3, 5).at[0].set(False)),
          call(x.normal(4, 5), x.probs(4, 5), where=x.mask(4)),  # per example
          call(neg_inf, x.one_hot(3, 4).at[0].set(x.array([0.0, 0.0, 1.0, 0.0])))]


def _integer_ce(x):
  shape = (1, 2, 3, 4)
  labels = jnp.ravel_multi_index((x.ints(3, 1, 2), x.ints(4, 1, 2)), shape[2:])
  neg_inf = x.normal(3, 4).at[0, 1].set(-jnp.inf)
  return [call(x.normal(5), x.ints(5)),
          call(x.normal(3, 4), x.ints(4, 3)),
          call(x.normal(2, 3, 6), x.ints(6, 2, 3)),
          call(x.normal(5, 3), x.ints(5, 3), axis=0),
          call(x.normal(*shape), labels, axis=(2, 3)),
          call(x.normal(*shape), labels, axis=(2, 3), where=x.mask(*shape).at[..., 0, 0]
               .set(True)),
          call(x.normal(3, 5), jnp.array([0, 2, 4]),
               where=x.mask(3, 5).at[0].set(False).at[1, 2].set(True).at[2, 4].set(True)),
          call(x.normal(4, 5), x.ints(5, 4), where=jnp.array([True, False, True, True])),
          call(neg_inf, jnp.array([0, 0, 3]))]


def _safe_ce(x):
  logits = x.normal(3, 4).at[0, 1].set(-jnp.inf).at[2, 0].set(-jnp.inf).at[2, 3].set(
      -jnp.inf)
  labels = x.array([[0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.3, 0.7, 0.0]])
  return [call(x.normal(3, 4), x.probs(3, 4), argnums=(0, 1)),
          call(x.normal(2, 3, 5), x.one_hot(2, 3, 5)),
          call(logits, labels, argnums=(0, 1))]


def _poly(x):
  return [call(x.normal(3, 4), x.one_hot(3, 4), argnums=(0, 1)),
          call(x.normal(2, 3, 5), x.probs(2, 3, 5), epsilon=-1.0),
          call(x.normal(3, 4), x.probs(3, 4, axis=0), axis=0, epsilon=0.5),
          call(x.normal(3, 5), x.one_hot(3, 5), where=x.mask(3, 5).at[:, 0].set(True))]


def _smooth(x):
  return [call(x.one_hot(3, 4), 0.1),
          call(x.one_hot(2, 3, 5), x.array(0.2), argnums=(0, 1)),
          call(x.one_hot(4, 3), 0.1, axis=0),
          call(x.one_hot(3, 4), 0.3, where=x.mask(3, 4))]


def _sigmoid_bce(x):
  extreme = x.array([-100.0, -30.0, 0.0, 30.0, 100.0])
  return [call(x.normal(6), x.ints(2, 6)),
          call(x.normal(3, 4), x.uniform(3, 4), argnums=(0, 1)),
          call(x.normal(2, 3, 4), x.ints(2, 2, 3, 4).astype(x.dtype)),
          call(extreme, x.array([1.0, 0.0, 1.0, 1.0, 0.0]))]


def _focal(x):
  extreme = x.array([-100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0])
  hard = x.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
  return [call(x.normal(3, 4), x.ints(2, 3, 4)),
          call(x.normal(3, 4), x.uniform(3, 4), argnums=(0, 1), alpha=0.25, gamma=0.5),
          call(x.normal(2, 5), x.ints(2, 2, 5), gamma=0.0),
          call(x.normal(6), x.ints(2, 6), alpha=1.0),
          call(extreme, hard), call(extreme, hard, gamma=0.5, alpha=0.25)]


def _margin(x):
  ties = x.array([1.0, -1.0, 0.0, 0.5, -2.0])
  signs = x.array([1.0, -1.0, 1.0, -1.0, 1.0])
  return [call(x.normal(6), x.signs(6)), call(x.normal(3, 4), x.signs(3, 4)),
          call(ties, signs)]


def _multiclass_margin(x):
  tied = x.array([[1.0, 0.0, 0.0], [2.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
  return [call(x.normal(4, 5), x.ints(5, 4)), call(x.normal(2, 3, 5), x.ints(5, 2, 3)),
          call(x.normal(6), x.ints(6)), call(tied, jnp.array([0, 1, 2]))]


def _kl(targets_log):
  def cases(x):
    zero_targets = x.probs(3, 4).at[0, 1].set(0.0).at[2, 0].set(0.0)
    t = (lambda *s, axis=-1: x.log_probs(*s, axis=axis)) if targets_log else x.probs
    calls = [call(x.log_probs(5), t(5), argnums=(0, 1)),
             call(x.log_probs(3, 4), t(3, 4), argnums=(0, 1)),
             call(x.log_probs(2, 3, 4, axis=0), t(2, 3, 4, axis=0), argnums=(0, 1),
                  axis=0),
             call(x.normal(2, 3, 4), t(2, 3, 4), argnums=(0, 1), axis=(1, 2)),
             call(x.log_probs(3, 5), t(3, 5), argnums=(0, 1), where=x.mask(3, 5))]
    if not targets_log:
      # Zero targets: 0 log 0 = 0 in the value; the gradient in the targets is NaN there.
      calls.append(call(x.log_probs(3, 4), zero_targets, argnums=(0, 1)))
    return calls
  return cases


def _generalized_kl(x):
  return [call(x.normal(3, 4), x.uniform(3, 4, low=0.1, high=2.0), argnums=(0, 1)),
          call(x.normal(2, 3, 4), x.uniform(2, 3, 4, high=3.0), argnums=(0, 1), axis=0),
          call(x.normal(3, 5), x.uniform(3, 5).at[1, 2].set(0.0), where=x.mask(3, 5))]


def _ctc(x):
  """One shape, so that the jitted loss and gradient compile once per keyword set."""
  logits = x.normal(3, 7, 5)
  labels = jnp.array([[1, 2, 2, 3], [4, 4, 4, 0], [3, 1, 0, 0]])  # repeats, padding
  label_paddings = x.array([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]])
  logit_paddings = x.array([[0] * 7, [0] * 6 + [1], [0] * 4 + [1] * 3])
  no_blank_2 = jnp.array([[1, 3, 3, 4], [0, 0, 4, 0], [3, 1, 0, 0]])
  return [call(logits, logit_paddings, labels, label_paddings),
          call(x.normal(3, 7, 5), x.array(np.zeros((3, 7))), x.ints(4, 3, 4) + 1,
               x.array(np.zeros((3, 4)))),
          call(logits * 20, logit_paddings, labels, label_paddings),
          call(logits, logit_paddings, no_blank_2, label_paddings, blank_id=2,
               log_epsilon=-1e4)]


def _ranking(x):
  where = x.mask(4, 5).at[:, 0].set(True).at[1].set(False)  # list 1: no item
  return [call(x.normal(5), x.ints(3, 5).astype(x.dtype)),
          call(x.normal(4, 5), x.uniform(4, 5), argnums=(0, 1)),
          call(x.normal(4, 5), x.ints(2, 4, 5), where=where),
          call(x.normal(4, 5), x.ints(2, 4, 5), where=where, reduce_fn=None),
          call(x.normal(4, 5), x.ints(2, 4, 5), where=where, reduce_fn=jnp.sum),
          call(x.normal(2, 3, 5), x.uniform(2, 3, 5), argnums=(0, 1),
               weights=x.uniform(2, 3, 5)),
          call(x.normal(2, 4), x.ints(2, 2, 4), where=jnp.zeros((2, 4), bool))]


def _dice(x):
  logits, targets = x.normal(2, 4, 4, 3), x.one_hot(2, 4, 4, 3)
  probs = jax.nn.softmax(x.normal(2, 5, 3), axis=-1)
  return [call(logits, targets, argnums=(0, 1)),
          call(logits, targets, alpha=0.3, beta=0.7, smooth=0.1),
          call(logits, targets, class_weights=x.uniform(3), reduction="sum"),
          call(logits, targets, ignore_background=True, reduction="none"),
          call(logits, targets, axis=(1, 2, 3), argnums=(0, 1)),
          call(probs, x.one_hot(2, 5, 3), apply_softmax=False, eager=True),
          call(x.normal(2, 6), x.ints(2, 2, 6).astype(x.dtype)),  # binary, no channel
          call(x.normal(2, 6, 1), x.ints(2, 2, 6).astype(x.dtype))]


def _generalized_dice(x):
  targets = x.one_hot(2, 4, 4, 3)
  probs = jax.nn.softmax(x.normal(2, 5, 4), axis=-1)
  return [call(x.normal(2, 4, 4, 3), targets, argnums=(0, 1)),
          call(x.normal(2, 4, 4, 3), targets, smooth=0.1, ignore_background=True),
          call(probs, x.one_hot(2, 5, 4), apply_softmax=False, eager=True)]


def _binary_dice(x):
  return [call(x.normal(2, 8), x.ints(2, 2, 8).astype(x.dtype), argnums=(0, 1)),
          call(x.normal(2, 8, 1), x.ints(2, 2, 8, 1).astype(x.dtype), smooth=0.5),
          call(x.normal(3, 6, scale=3.0), x.ints(2, 3, 6).astype(x.dtype), smooth=2.0)]


def _ntxent(x):
  return [call(x.normal(6, 3), jnp.array([0, 0, 1, 1, 2, 2])),
          call(x.normal(5, 4), jnp.array([0, 1, 0, 1, 0]), 0.5),
          call(x.normal(4, 2, scale=10.0), jnp.array([1, 1, 2, 2]), x.array(0.1),
               argnums=(0, 2))]


def _triplet(x):
  a, p, n = x.normal(4, 3), x.normal(4, 3), x.normal(4, 3)
  return [call(a, p, n, argnums=(0, 1, 2)),
          call(x.normal(3, 5), x.normal(3, 5), x.normal(3, 5), axis=0, margin=2.0),
          call(a, p, n, argnums=(0, 1, 2), norm_degree=4, eps=1e-3),
          call(a, a, n, argnums=(0, 2))]  # zero positive distance: eps keeps it finite


def _fenchel_young(max_fun):
  def cases(x):
    return [call(x.normal(5), x.probs(5), argnums=(0, 1)),
            call(x.normal(3, 4), x.one_hot(3, 4), argnums=(0, 1)),
            call(x.normal(2, 3, 4), x.probs(2, 3, 4))]
  return cases


def _sparsemax(x):
  logits = x.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])  # every piece and both kinks
  return [call(logits, jnp.array([1, 0, 1, 0, 1, 0, 1])),
          call(logits, jnp.array([0, 1, 0, 1, 0, 1, 0])),
          call(x.normal(3, 4, scale=2.0), x.ints(2, 3, 4))]


def _multiclass_sparsemax(x):
  tied = x.array([[1.0, 1.0, 0.0, -2.0], [0.0, 0.0, 0.0, 0.0], [5.0, -5.0, 0.1, 0.2]])
  return [call(x.normal(4, 5), x.ints(5, 4)), call(x.normal(6, 3, scale=0.2), x.ints(3, 6)),
          call(tied, jnp.array([0, 3, 1]))]


def _tempered_logsumexp(scores, temperature=1.0):
  return temperature * jax.scipy.special.logsumexp(scores / temperature)


# name -> (loss, cases); the part of the name before "/" is the public name.
CASES = {
    "squared_error": _regression,
    "l2_loss": _regression,
    "huber_loss": _huber,
    "log_cosh": _log_cosh,
    "cosine_similarity": _cosine,
    "cosine_distance": lambda x: [_cosine(x)[i] for i in (0, 3, 5)],  # 1 - similarity
    "softmax_cross_entropy": _softmax_ce,
    "softmax_cross_entropy_with_integer_labels": _integer_ce,
    "safe_softmax_cross_entropy": _safe_ce,
    "poly_loss_cross_entropy": _poly,
    "smooth_labels": _smooth,
    "sigmoid_binary_cross_entropy": _sigmoid_bce,
    "sigmoid_focal_loss": _focal,
    "hinge_loss": _margin,
    "perceptron_loss": _margin,
    "multiclass_hinge_loss": _multiclass_margin,
    "multiclass_perceptron_loss": _multiclass_margin,
    "kl_divergence": _kl(targets_log=False),
    "kl_divergence_with_log_targets": _kl(targets_log=True),
    "generalized_kl_divergence": _generalized_kl,
    "convex_kl_divergence": lambda x: _generalized_kl(x)[:1],  # an alias
    "ctc_loss": lambda x: _ctc(x)[:1],  # the first output of the next
    "ctc_loss_with_forward_probs": _ctc,
    "ranking_softmax_loss": _ranking,
    "dice_loss": _dice,
    "multiclass_generalized_dice_loss": _generalized_dice,
    "binary_dice_loss": _binary_dice,
    "ntxent": _ntxent,
    "triplet_margin_loss": _triplet,
    "make_fenchel_young_loss": _fenchel_young(jax.scipy.special.logsumexp),
    "make_fenchel_young_loss/extra_args": _fenchel_young(_tempered_logsumexp),
    "sparsemax_loss": _sparsemax,
    "multiclass_sparsemax_loss": _multiclass_sparsemax,
}


def _loss(module, name):
  public = name.split("/")[0]
  if public != "make_fenchel_young_loss":
    return getattr(module, public)
  max_fun = (_tempered_logsumexp if name.endswith("extra_args")
             else jax.scipy.special.logsumexp)
  fy = module.make_fenchel_young_loss(max_fun)
  return (lambda s, t: fy(s, t, temperature=0.5)) if name.endswith("extra_args") else fy


def _total(fn, kwargs):
  """``sum(loss)`` (of the first output where the loss returns a tuple), and the loss."""
  def total(*args):
    out = fn(*args, **kwargs)
    return jnp.sum(out[0] if isinstance(out, tuple) else out), out
  return total


def _value_and_grad(fn, args, kwargs, argnums):
  """The loss on ``args`` and the gradient of its sum in the ``argnums`` arguments."""
  (_, out), grads = jax.value_and_grad(_total(fn, kwargs), argnums, has_aux=True)(*args)
  return out, grads


def _both(name, calls):
  """gtx's and Optax's loss and gradient on every call: those not ``eager`` in one
  jitted computation (one compilation per loss and dtype), with the arrays, keyword
  ones included, as its arguments."""
  fns = _loss(gtx.losses, name), _loss(optax.losses, name)

  def run(calls, arrays):
    return [[_value_and_grad(fn, args, {**c.kwargs, **array_kwargs}, c.argnums)
             for fn in fns] for c, (args, array_kwargs) in zip(calls, arrays)]

  traced = [c for c in calls if not c.eager]
  arrays = [(c.args, {k: v for k, v in c.kwargs.items() if isinstance(v, jax.Array)})
            for c in traced]
  results = iter(jax.jit(lambda a: run(traced, a))(arrays))
  return [run([c], [(c.args, {})])[0] if c.eager else next(results) for c in calls]


def _assert_close(actual, expected, dtype, what):
  rtol, atol = (1e-6, 1e-12) if dtype == jnp.float32 else (1e-14, 1e-15)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.shape == e.shape and a.dtype == e.dtype, (what, a.shape, e.shape, a.dtype,
                                                       e.dtype)
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol,
                               err_msg=what)


def test_public_names_are_optaxs():
  assert set(gtx.losses.__all__) == OPTAX_NAMES
  top_level = {n for n in dir(optax) if n in OPTAX_NAMES}
  assert {n for n in dir(gtx) if n in OPTAX_NAMES} == top_level
  for name in top_level:
    assert getattr(gtx, name) is getattr(gtx.losses, name)


def test_every_public_name_has_cases():
  assert {name.split("/")[0] for name in CASES} == OPTAX_NAMES


@pytest.mark.parametrize("name", sorted(OPTAX_NAMES))
def test_signature_is_optaxs(name):
  ours = inspect.signature(getattr(gtx.losses, name)).parameters.values()
  theirs = inspect.signature(getattr(optax.losses, name)).parameters.values()
  assert [(p.name, p.kind, p.default) for p in ours] == [
      (p.name, p.kind, p.default) for p in theirs]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_values_and_gradients_match_optax(name, dtype):
  with jax.enable_x64(dtype == "float64"), warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # convex_kl_divergence
    results = _both(name, CASES[name](Inputs(dtype)))
    for i, ((ours, our_grads), (theirs, their_grads)) in enumerate(results):
      what = f"{name} case {i}"
      _assert_close(ours, theirs, jnp.dtype(dtype), what)
      _assert_close(our_grads, their_grads, jnp.dtype(dtype), what + " (gradient)")


def test_documented_edge_cases():
  """The behaviours Optax's docstrings promise, checked on gtx directly."""
  logits = jnp.array([[0.0, -jnp.inf, 1.0]])
  labels = jnp.array([[0.5, 0.0, 0.5]])
  # softmax_cross_entropy: 0 * -inf = NaN; the safe version: 0 log 0 = 0, finite grads.
  assert jnp.isnan(gtx.softmax_cross_entropy(logits, labels)).all()
  safe = gtx.safe_softmax_cross_entropy(logits, labels)
  np.testing.assert_allclose(safe, -0.5 * (jax.nn.log_softmax(jnp.array([0.0, 1.0])).sum()),
                             rtol=1e-6)
  assert jnp.isfinite(jax.grad(lambda x: gtx.safe_softmax_cross_entropy(x, labels).sum())(
      logits)).all()
  # Fully masked examples: loss 0.
  where = jnp.array([[False, False, False], [True, True, False]])
  out = gtx.softmax_cross_entropy_with_integer_labels(jnp.ones((2, 3)), jnp.array([0, 1]),
                                                      where=where)
  np.testing.assert_allclose(out, [0.0, np.log(2.0)], rtol=1e-6)
  # Ranking: a mean over lists with no valid item is 0.
  assert gtx.losses.ranking_softmax_loss(jnp.ones((2, 3)), jnp.ones((2, 3)),
                                         where=jnp.zeros((2, 3), bool)) == 0.0
  # sparsemax_loss is 0 exactly where sparse_sigmoid(logits) equals the label.
  np.testing.assert_array_equal(
      gtx.losses.sparsemax_loss(jnp.array([2.0, -2.0]), jnp.array([1, 0])), [0.0, 0.0])
  # The Fenchel-Young loss of logsumexp is the softmax cross-entropy.
  fy = gtx.losses.make_fenchel_young_loss(jax.scipy.special.logsumexp)
  x, y = jnp.array([[1.0, 2.0, -1.0]]), jnp.array([[0.0, 1.0, 0.0]])
  np.testing.assert_allclose(fy(x, y), gtx.softmax_cross_entropy(x, y), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_probabilities_are_accepted(dtype):
  """Departure from Optax 0.2.8: binary_dice_loss(apply_sigmoid=False) and single-
  channel dice_loss(apply_softmax=False) take probabilities of the positive class;
  Optax demands that they sum to 1 over the one channel, i.e. that they all be 1.

  Oracle: Optax's own dice_loss on the equivalent two-channel input (``[1 - p, p]``,
  ``[1 - t, t]``), whose class-1 loss is the binary one; and Optax's
  binary_dice_loss on the logits of ``p`` (its sigmoid branch)."""
  with jax.enable_x64(dtype == "float64"):
    x = Inputs(dtype)
    probs, targets = x.uniform(3, 6, low=0.05, high=0.95), x.ints(2, 3, 6).astype(x.dtype)
    with pytest.raises(ValueError, match="sum to 1"):
      optax.losses.binary_dice_loss(probs, targets, apply_sigmoid=False)
    ours = gtx.losses.binary_dice_loss(probs, targets, apply_sigmoid=False)
    two_channel = optax.losses.dice_loss(
        jnp.stack([1 - probs, probs], -1), jnp.stack([1 - targets, targets], -1),
        apply_softmax=False, reduction="none")[..., 1]
    _assert_close(ours, two_channel, jnp.dtype(dtype), "two channels")
    logits = jnp.log(probs) - jnp.log1p(-probs)
    rtol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(ours, optax.losses.binary_dice_loss(logits, targets),
                               rtol=rtol)
    single = gtx.losses.dice_loss(probs[..., None], targets[..., None],
                                  apply_softmax=False)
    _assert_close(single, ours, jnp.dtype(dtype), "dice_loss, one channel")


def test_convex_kl_divergence_warns_as_optax_does():
  args = (jnp.log(jnp.array([0.2, 0.8])), jnp.array([0.5, 0.5]))
  with pytest.warns(DeprecationWarning) as ours:
    gtx.convex_kl_divergence(*args)
  with pytest.warns(DeprecationWarning) as theirs:
    optax.convex_kl_divergence(*args)
  assert str(ours[0].message) == str(theirs[0].message)


ERRORS = {
    "squared_error/shapes": ("squared_error", (jnp.ones(3), jnp.ones((1, 3))), {}),
    "squared_error/integers": ("squared_error", (jnp.ones(3, int), jnp.ones(3, int)), {}),
    "integer_labels/float_labels": ("softmax_cross_entropy_with_integer_labels",
                                    (jnp.ones((2, 3)), jnp.zeros(2)), {}),
    "integer_labels/axis_type": ("softmax_cross_entropy_with_integer_labels",
                                 (jnp.ones((2, 3)), jnp.zeros(2, int)), {"axis": [1]}),
    "integer_labels/axis_range": ("softmax_cross_entropy_with_integer_labels",
                                  (jnp.ones((2, 3)), jnp.zeros(2, int)), {"axis": 2}),
    "perceptron_loss/shapes": ("perceptron_loss", (jnp.ones(3), jnp.ones(4)), {}),
    "ctc/rank": ("ctc_loss", (jnp.ones((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 2), int),
                              jnp.zeros((2, 2))), {}),
    "ctc/batch": ("ctc_loss", (jnp.ones((2, 3, 4)), jnp.zeros((2, 3)),
                               jnp.zeros((3, 2), int), jnp.zeros((3, 2))), {}),
    "dice/not_probabilities": ("dice_loss", (jnp.ones((2, 3, 4)), jnp.ones((2, 3, 4))),
                               {"apply_softmax": False}),
    "dice/reduction": ("dice_loss", (jnp.ones((2, 3, 4)), jnp.ones((2, 3, 4))),
                       {"reduction": "max"}),
    "dice/class_weights_rank": ("dice_loss", (jnp.ones((2, 3, 4)), jnp.ones((2, 3, 4))),
                                {"class_weights": jnp.ones((1, 4))}),
    "ntxent/batch": ("ntxent", (jnp.ones((4, 2)), jnp.zeros(3, int)), {}),
    "triplet/integers": ("triplet_margin_loss", (jnp.ones((2, 3), int),) * 3, {}),
    "sigmoid_bce/integers": ("sigmoid_binary_cross_entropy",
                             (jnp.ones(3, int), jnp.ones(3)), {}),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_optaxs(case):
  name, args, kwargs = ERRORS[case]
  with pytest.raises(Exception) as theirs:
    getattr(optax.losses, name)(*args, **kwargs)
  with pytest.raises(theirs.type) as ours:
    getattr(gtx.losses, name)(*args, **kwargs)
  assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("name", ["safe_softmax_cross_entropy"])
def test_eagerly_too(name):
  """A loss with a custom JVP, eagerly (the other tests run under jit)."""
  args, kwargs, argnums, _ = CASES[name](Inputs("float32"))[1]
  ours = _value_and_grad(_loss(gtx.losses, name), args, kwargs, argnums)
  theirs = _value_and_grad(_loss(optax.losses, name), args, kwargs, argnums)
  _assert_close(ours, theirs, jnp.float32, name)

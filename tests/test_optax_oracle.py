"""Oracle: Optax 0.2.8. Every gradtx name that Optax also has must follow the same
trajectory, step by step, over 60 steps on a mixed-shape pytree, in float32 and float64.

Primitives are followed by ``scale(-lr)`` on both sides so that they descend. Each
comparison compiles gradtx's step and Optax's into one program
(``oracles.paired_trajectories``).
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from oracles import assert_trajectories_close, paired_trajectories

LR = 0.02
sched = lambda count: 0.1 * 0.97**count  # noqa: E731
no_bias = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731

PRIMITIVES = {
    "scale_by_schedule": (lambda m: m.scale_by_schedule(sched), None),
    "add_momentum/trace": (lambda m: gtx.add_momentum(0.9), lambda: optax.trace(0.9)),
    "add_momentum/nesterov": (lambda m: gtx.add_momentum(0.8, nesterov=True),
                              lambda: optax.trace(0.8, nesterov=True)),
    "add_momentum/ema": (lambda m: gtx.add_momentum(0.9, ema=True),
                         lambda: optax.ema(0.9, debias=False)),
    "bias_corrected_ema": (lambda m: gtx.chain(gtx.add_momentum(0.9, ema=True),
                                               gtx.bias_correction(0.9)),
                           lambda: optax.ema(0.9, debias=True)),
    "scale_by_rss": (lambda m: m.scale_by_rss(0.2, 1e-6), None),
    "scale_by_rms": (lambda m: m.scale_by_rms(0.95), None),
    "scale_by_rms/variants": (lambda m: m.scale_by_rms(0.9, 1e-6, 0.1, eps_in_sqrt=False,
                                                       bias_correction=True), None),
    "scale_by_stddev": (lambda m: m.scale_by_stddev(0.9, 1e-4, 0.5), None),
    "scale_by_stddev/variants": (lambda m: m.scale_by_stddev(
        0.95, 1e-4, 0.5, eps_in_sqrt=False, bias_correction=True), None),
    "scale_by_adadelta": (lambda m: m.scale_by_adadelta(0.9, 1e-4), None),
    "scale_by_adam": (lambda m: m.scale_by_adam(), None),
    "scale_by_adam/eps_root": (lambda m: m.scale_by_adam(0.8, 0.99, 1e-6, 1e-8), None),
    "scale_by_adam/nesterov": (lambda m: m.scale_by_adam(nesterov=True), None),
    "scale_by_amsgrad": (lambda m: m.scale_by_amsgrad(), None),
    "scale_by_amsgrad/no_bias": (lambda m: m.scale_by_amsgrad(
        bias_correction_mu=False, bias_correction_nu=False), None),
    "scale_by_adamax": (lambda m: m.scale_by_adamax(), None),
    "scale_by_radam": (lambda m: m.scale_by_radam(), None),
    "scale_by_radam/nesterov": (lambda m: m.scale_by_radam(0.8, 0.99, nesterov=True), None),
    "add_decayed_weights": (lambda m: m.chain(m.add_decayed_weights(0.1),
                                              m.scale_by_adam()), None),
    "add_decayed_weights/mask": (lambda m: m.chain(m.add_decayed_weights(0.1, no_bias),
                                                   m.scale_by_adam()), None),
    "add_decayed_weights/schedule": (lambda m: m.add_decayed_weights(sched), None),
    "clip": (lambda m: m.chain(m.scale(40.0), m.clip(1.5)), None),
    "clip_by_global_norm": (lambda m: m.chain(m.clip_by_global_norm(3.0)), None),
}

ALIASES = {
    "sgd": lambda m: m.sgd(LR),
    "sgd/momentum": lambda m: m.sgd(LR, momentum=0.9),
    "sgd/nesterov": lambda m: m.sgd(LR, momentum=0.9, nesterov=True),
    "sgd/schedule": lambda m: m.sgd(sched, momentum=0.5),
    "adagrad": lambda m: m.adagrad(0.1),
    "rmsprop": lambda m: m.rmsprop(LR),
    "rmsprop/centered": lambda m: m.rmsprop(LR, centered=True, initial_scale=0.5),
    "rmsprop/momentum": lambda m: m.rmsprop(LR, momentum=0.9),
    "rmsprop/nesterov_bias": lambda m: m.rmsprop(LR, momentum=0.9, nesterov=True,
                                                 bias_correction=True),
    # Optax's adadelta() with no learning rate climbs (identity instead of -1): compare
    # with lr 1.0 given; the paper's lr-free descent is checked against torch.
    "adadelta": lambda m: m.adadelta(1.0),
    "adadelta/lr_wd": lambda m: m.adadelta(1.0, weight_decay=0.1),
    "adam": lambda m: m.adam(LR),
    "adam/schedule": lambda m: m.adam(sched, b1=0.8),
    "adamw": lambda m: m.adamw(LR, weight_decay=0.1),
    "adamw/mask": lambda m: m.adamw(LR, weight_decay=0.1, mask=no_bias),
    "adamax": lambda m: m.adamax(LR),
    "nadam": lambda m: m.nadam(LR),
    "amsgrad": lambda m: m.amsgrad(LR),
    "radam": lambda m: m.radam(LR),
}


def _descending(tx, module):
  return module.chain(tx, module.scale(-LR))


def _pair(name):
  if name in ALIASES:
    return ALIASES[name](gtx), ALIASES[name](optax)
  ours, theirs = PRIMITIVES[name]
  theirs = theirs() if theirs is not None else ours(optax)
  return _descending(ours(gtx), gtx), _descending(theirs, optax)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", [*PRIMITIVES, *ALIASES])
def test_matches_optax(name, dtype):
  with jax.enable_x64(dtype == "float64"):
    ours, theirs = _pair(name)
    params = make_params(jnp.dtype(dtype))
    assert_trajectories_close(*paired_trajectories(ours, theirs, params), dtype)


@pytest.mark.parametrize("name", ["adam", "adamw", "radam", "rmsprop/momentum"])
def test_state_matches_optax(name):
  """Same state, leaf for leaf, after a few steps: users can read it as in Optax."""
  ours, theirs = _pair(name)
  params = make_params()
  grads = jax.tree.map(lambda p: jnp.cos(p) + 0.5, params)
  s_ours, s_theirs = ours.init(params), theirs.init(params)
  for _ in range(3):
    _, s_ours = ours.update(grads, s_ours, params)
    _, s_theirs = theirs.update(grads, s_theirs, params)
  leaves_ours = jax.tree.leaves(s_ours)
  leaves_theirs = jax.tree.leaves(s_theirs)
  assert len(leaves_ours) == len(leaves_theirs)
  for a, b in zip(leaves_ours, leaves_theirs):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert jnp.allclose(a, b, rtol=1e-6, atol=1e-7)


EPS_SENSITIVE = ["adam", "adam/schedule", "nadam", "amsgrad", "adamax", "radam", "rmsprop",
                 "rmsprop/centered", "adagrad", "adadelta"]


@pytest.mark.parametrize("name", EPS_SENSITIVE)
def test_matches_optax_where_eps_matters(name):
  """Gradients of order 1e-7, where every epsilon's placement changes the step."""
  from conftest import loss
  tiny = lambda p: 1e-7 * loss(p)  # noqa: E731
  ours, theirs = ALIASES[name](gtx), ALIASES[name](optax)
  params = make_params()
  assert_trajectories_close(*paired_trajectories(ours, theirs, params, loss_fn=tiny))


def test_harness_detects_an_epsilon_change():
  from conftest import loss
  tiny = lambda p: 1e-7 * loss(p)  # noqa: E731
  params = make_params()
  with pytest.raises(AssertionError):
    assert_trajectories_close(*paired_trajectories(gtx.adam(LR, eps=1e-7), optax.adam(LR),
                                                   params, loss_fn=tiny))


@pytest.mark.parametrize("name, make", [
    ("adam/b1", lambda m, s: m.adam(LR, b1=s)),
    ("rmsprop/decay", lambda m, s: m.rmsprop(LR, decay=s, momentum=0.5)),
    ("sgd/momentum", lambda m, s: m.sgd(LR, momentum=s)),
])
def test_any_hyperparameter_may_be_a_schedule(name, make):
  """Oracle: optax.inject_hyperparams, the way Optax users schedule a non-lr value."""
  momentum = lambda count: 0.5 + 0.4 * (1 - 0.9**count)  # noqa: E731
  params = make_params()
  ours = make(gtx, momentum)
  theirs = optax.inject_hyperparams(lambda s: make(optax, s))(s=momentum)
  assert_trajectories_close(*paired_trajectories(ours, theirs, params))
  assert isinstance(ours.init(params), gtx.InjectHyperparamsState)

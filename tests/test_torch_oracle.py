"""Oracle: torch.optim (2.13, the single-tensor ``foreach=False`` code paths).

Every gradtx alias that some torch optimizer computes must follow that optimizer's
trajectory step by step, over 60 steps on the mixed-shape pytree of ``conftest``, in
float64 and float32. Only the optimizer is compared: both sides take their gradients from
JAX (``jax.grad(conftest.loss)`` at torch's current params, written into ``.grad``), so a
difference can only come from the update rule.

How torch's conventions map onto gradtx (each row is a case below):

  torch.optim                               gradtx
  SGD(lr, momentum, nesterov), dampening=0  sgd(lr, momentum, nesterov)
  SGD(..., weight_decay=wd)                 chain(add_decayed_weights(wd), sgd(...))
                                            (torch's coupled L2: g + wd*p before momentum)
  SGD + ExponentialLR(gamma)                sgd(exponential_decay(lr, 1, gamma)); torch
                                            steps the scheduler after each step, a gradtx
                                            schedule sees the count from 0: same lr per step
  Adam(lr, betas, eps)                      adam(lr, b1, b2, eps)
  Adam(..., weight_decay=wd)                chain(add_decayed_weights(wd), adam(...))
  AdamW(lr, ..., weight_decay=wd)           adamw(lr, ..., weight_decay=wd): torch's
                                            p*(1 - lr*wd) - lr*adam equals
                                            p - lr*(adam + wd*p)
  Adamax(lr, betas, eps)                    adamax(lr, b1, b2, eps)
  NAdam(..., momentum_decay=1e9)            nadam(...): torch's momentum schedule
                                            mu_t = b1*(1 - 0.5*0.96**(t*psi)) is exactly b1
                                            once 0.96**(t*psi) underflows to 0
  Adagrad(lr, lr_decay, iav, eps=0)         adagrad(inverse_time_decay(lr, lr_decay), iav,
                                            eps=0); torch's eps sits outside the sqrt,
                                            gradtx's inside, so they agree only at eps=0
                                            (iav > 0 keeps the first division finite)
  RMSprop(lr, alpha, eps, centered, mom.)   rmsprop(lr, decay=alpha, eps, eps_in_sqrt=False,
                                            centered, momentum); torch's buffer
                                            b = mom*b + g/avg, p -= lr*b is gradtx's
                                            m = mom*m - lr*g/avg, p += m for a constant lr
  RMSprop(..., weight_decay=wd)             chain(add_decayed_weights(wd), rmsprop(...))
  Adadelta(lr, rho, eps, weight_decay)      adadelta(lr, rho, eps, weight_decay)
  RAdam(lr, betas, eps=0)                   radam(lr, b1, b2, eps=0)
  RAdam(..., weight_decay=wd)               chain(add_decayed_weights(wd), radam(...))
  RAdam(..., decoupled_weight_decay=True)   chain(scale_by_radam(...),
                                            add_decayed_weights(wd),
                                            scale_by_learning_rate(lr))
  Rprop(lr, etas, step_sizes)               rprop(lr, eta_minus, eta_plus, min, max)

Where the maths is identical the float64 tolerance is rtol 1e-10, not 1e-12 as against
Optax: the two libraries round differently (torch's ``lerp`` for the first moment,
``sqrt(v)/sqrt(1-b2**t)`` instead of ``sqrt(v/(1-b2**t))``, bias corrections in Python
doubles), and this non-convex loss amplifies those last-bit differences over 60 steps to
about 1e-13, orders of magnitude below what any difference in the update rule gives (see
``test_harness_detects_a_different_rule``).

Not mappable, so not compared:
  * NAdam with a finite ``momentum_decay`` (torch's default 4e-3): its momentum
    coefficient changes every step, gradtx's (Optax's, Dozat's) Nadam keeps ``b1``.
  * Adam(amsgrad=True): torch keeps the running max of the *uncorrected* ``nu`` and
    divides by the current ``sqrt(1-b2**t)``; gradtx (Optax, Reddi et al.) keeps the
    running max of the bias-corrected ``nu_hat``. Neither ``bias_correction_nu`` setting
    reproduces torch's.
  * SGD(dampening>0): torch's first step sets the buffer to ``g``, not ``(1-d)*g``.
  * Adagrad with eps > 0: gradtx (Optax) adds it inside the square root, torch outside;
    close but not equal (the ``torch_default_eps`` cases below bound the difference).
    RMSprop has no such problem: ``eps_in_sqrt=False`` is torch's placement.
"""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx as gtx
from conftest import loss, make_params
from oracles import STEPS, assert_trajectories_close, trajectory

LR = 0.02
WD = 0.1

# float64: see the module docstring. float32: the same last-bit differences, plus gradtx's
# bias corrections 1 - b**t computed in float32 where torch uses Python doubles.
TIGHT = {"float64": dict(rtol=1e-10, atol=1e-11), "float32": dict(rtol=1e-4, atol=1e-5)}
# The same rule with eps inside a square root on one side and outside on the other: the
# difference is of order eps/sqrt(nu) per step.
EPS_PLACEMENT = {"float64": dict(rtol=1e-6, atol=1e-7)}
# gradtx's (Optax's) schedules divide the int32 step count in float32 even under x64, so
# exponential_decay's lr carries float32 rounding (relative 1e-7) into a float64 run.
SCHEDULE = {"float64": dict(rtol=1e-6, atol=1e-7), "float32": TIGHT["float32"]}
# gradtx (like Optax) computes rho_t = rho_inf - 2t*b2**t/(1 - b2**t) in float32 from b2
# rounded to float32: two cancellations that leave r_t 1.2% low at the first rectified
# step (t=6, b2=0.999) and 0.04% low at t=60; torch computes it in Python doubles. Over
# 60 steps of lr 0.02 that moves the params by up to ~1e-4.
RECTIFIED = {"float64": TIGHT["float64"], "float32": dict(rtol=1e-3, atol=3e-4)}


def _no_scheduler(opt):
  del opt


def _exponential_lr(gamma):
  return lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma)


# name: (gradtx transform, torch optimizer factory, torch scheduler factory, tolerances)
CASES = {
    "sgd": (lambda: gtx.sgd(LR),
            lambda ps: torch.optim.SGD(ps, lr=LR, foreach=False), _no_scheduler, TIGHT),
    "sgd/momentum": (lambda: gtx.sgd(LR, momentum=0.9),
                     lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, foreach=False),
                     _no_scheduler, TIGHT),
    "sgd/nesterov": (lambda: gtx.sgd(LR, momentum=0.9, nesterov=True),
                     lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, nesterov=True,
                                                foreach=False),
                     _no_scheduler, TIGHT),
    "sgd/weight_decay": (lambda: gtx.chain(gtx.add_decayed_weights(WD),
                                           gtx.sgd(LR, momentum=0.9)),
                         lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9,
                                                    weight_decay=WD, foreach=False),
                         _no_scheduler, TIGHT),
    "sgd/exponential_lr": (lambda: gtx.sgd(gtx.exponential_decay(0.05, 1, 0.95),
                                           momentum=0.5),
                           lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.5,
                                                      foreach=False),
                           _exponential_lr(0.95), SCHEDULE),
    "adam": (lambda: gtx.adam(LR),
             lambda ps: torch.optim.Adam(ps, lr=LR, foreach=False), _no_scheduler, TIGHT),
    "adam/betas_eps": (lambda: gtx.adam(LR, b1=0.8, b2=0.99, eps=1e-3),
                       lambda ps: torch.optim.Adam(ps, lr=LR, betas=(0.8, 0.99), eps=1e-3,
                                                   foreach=False),
                       _no_scheduler, TIGHT),
    "adam/weight_decay": (lambda: gtx.chain(gtx.add_decayed_weights(WD), gtx.adam(LR)),
                          lambda ps: torch.optim.Adam(ps, lr=LR, weight_decay=WD,
                                                      foreach=False),
                          _no_scheduler, TIGHT),
    "adamw": (lambda: gtx.adamw(LR, weight_decay=WD),
              lambda ps: torch.optim.AdamW(ps, lr=LR, weight_decay=WD, foreach=False),
              _no_scheduler, TIGHT),
    "adamax": (lambda: gtx.adamax(LR),
               lambda ps: torch.optim.Adamax(ps, lr=LR, foreach=False), _no_scheduler,
               TIGHT),
    "nadam": (lambda: gtx.nadam(LR),
              lambda ps: torch.optim.NAdam(ps, lr=LR, momentum_decay=1e9, foreach=False),
              _no_scheduler, TIGHT),
    "adagrad": (lambda: gtx.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
                lambda ps: torch.optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.1,
                                               eps=0.0, foreach=False),
                _no_scheduler, TIGHT),
    "adagrad/lr_decay": (lambda: gtx.adagrad(gtx.inverse_time_decay(0.2, 0.05),
                                             initial_accumulator_value=0.5, eps=0.0),
                         lambda ps: torch.optim.Adagrad(ps, lr=0.2, lr_decay=0.05,
                                                        initial_accumulator_value=0.5,
                                                        eps=0.0, foreach=False),
                         _no_scheduler, TIGHT),
    "adagrad/torch_default_eps": (
        lambda: gtx.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
        lambda ps: torch.optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.1,
                                       foreach=False),
        _no_scheduler, EPS_PLACEMENT),
    "rmsprop": (lambda: gtx.rmsprop(LR, decay=0.99, eps_in_sqrt=False),
                lambda ps: torch.optim.RMSprop(ps, lr=LR, foreach=False),
                _no_scheduler, TIGHT),
    "rmsprop/centered": (lambda: gtx.rmsprop(LR, decay=0.9, eps=1e-6, eps_in_sqrt=False,
                                             centered=True),
                         lambda ps: torch.optim.RMSprop(ps, lr=LR, alpha=0.9, eps=1e-6,
                                                        centered=True, foreach=False),
                         _no_scheduler, TIGHT),
    "rmsprop/momentum": (lambda: gtx.rmsprop(LR, decay=0.99, eps_in_sqrt=False,
                                             momentum=0.9),
                         lambda ps: torch.optim.RMSprop(ps, lr=LR, momentum=0.9,
                                                        foreach=False),
                         _no_scheduler, TIGHT),
    "rmsprop/centered_momentum_wd": (
        lambda: gtx.chain(gtx.add_decayed_weights(WD),
                          gtx.rmsprop(LR, decay=0.95, eps_in_sqrt=False, centered=True,
                                      momentum=0.5)),
        lambda ps: torch.optim.RMSprop(ps, lr=LR, alpha=0.95, centered=True, momentum=0.5,
                                       weight_decay=WD, foreach=False),
        _no_scheduler, TIGHT),
    "adadelta": (lambda: gtx.adadelta(1.0, rho=0.9, eps=1e-6),
                 lambda ps: torch.optim.Adadelta(ps, lr=1.0, rho=0.9, eps=1e-6,
                                                 foreach=False),
                 _no_scheduler, TIGHT),
    "adadelta/lr_wd": (lambda: gtx.adadelta(5.0, rho=0.95, eps=1e-4, weight_decay=WD),
                       lambda ps: torch.optim.Adadelta(ps, lr=5.0, rho=0.95, eps=1e-4,
                                                       weight_decay=WD, foreach=False),
                       _no_scheduler, TIGHT),
    # torch rectifies where rho_t > 5, gradtx (Optax) where rho_t >= 5: no step of these
    # runs has rho_t == 5 exactly, so the threshold's strictness never matters here.
    # torch's adaptive step is sqrt(1-b2**t)/(sqrt(nu) + eps), Optax's
    # 1/(sqrt(nu/(1-b2**t)) + eps): equal at eps=0.
    "radam": (lambda: gtx.radam(LR, eps=0.0),
              lambda ps: torch.optim.RAdam(ps, lr=LR, eps=0.0, foreach=False),
              _no_scheduler, RECTIFIED),
    "radam/betas": (lambda: gtx.radam(LR, b1=0.8, b2=0.99, eps=0.0),
                    lambda ps: torch.optim.RAdam(ps, lr=LR, betas=(0.8, 0.99), eps=0.0,
                                                 foreach=False),
                    _no_scheduler, RECTIFIED),
    "radam/weight_decay": (lambda: gtx.chain(gtx.add_decayed_weights(WD),
                                             gtx.radam(LR, eps=0.0)),
                           lambda ps: torch.optim.RAdam(ps, lr=LR, eps=0.0,
                                                        weight_decay=WD, foreach=False),
                           _no_scheduler, RECTIFIED),
    "radam/decoupled_weight_decay": (
        lambda: gtx.chain(gtx.scale_by_radam(eps=0.0), gtx.add_decayed_weights(WD),
                          gtx.scale_by_learning_rate(LR)),
        lambda ps: torch.optim.RAdam(ps, lr=LR, eps=0.0, weight_decay=WD,
                                     decoupled_weight_decay=True, foreach=False),
        _no_scheduler, RECTIFIED),
    # torch's eps=1e-8 outside sqrt(nu), times sqrt(1-b2**t), is Optax's eps divided by
    # sqrt(1-b2**t) (up to ~13x larger at the first rectified step): close, not equal.
    "radam/torch_default_eps": (lambda: gtx.radam(LR),
                                lambda ps: torch.optim.RAdam(ps, lr=LR, foreach=False),
                                _no_scheduler, EPS_PLACEMENT),
    # gtx.rprop follows the paper and torch; Optax 0.2.8 emits each step one step late
    # (optax PR #1725), so torch, not Optax, is this alias's oracle.
    "rprop": (lambda: gtx.rprop(LR),
              lambda ps: torch.optim.Rprop(ps, lr=LR, foreach=False), _no_scheduler, TIGHT),
    "rprop/bounds": (lambda: gtx.rprop(0.1, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-3,
                                       max_step_size=0.2),
                     lambda ps: torch.optim.Rprop(ps, lr=0.1, etas=(0.3, 1.5),
                                                  step_sizes=(1e-3, 0.2), foreach=False),
                     _no_scheduler, TIGHT),
}


# float32 runs one case of each optimizer (the most general mappable configuration); the
# other cases differ from these only in hyperparameters, which float64 covers tightly.
FLOAT32 = ["sgd/weight_decay", "sgd/exponential_lr", "adam/weight_decay", "adamw", "adamax",
           "nadam", "adagrad/lr_decay", "rmsprop/momentum", "rmsprop/centered",
           "adadelta/lr_wd", "radam/decoupled_weight_decay", "rprop/bounds"]


@functools.lru_cache(maxsize=None)
def _jitted_grad(loss_fn):
  return jax.jit(jax.grad(loss_fn))


def torch_trajectory(make_optimizer, make_scheduler, params, steps=STEPS, loss_fn=loss):
  """Params after each of ``steps`` steps of a torch optimizer on ``loss_fn``.

  The gradient is JAX's, at torch's current params; torch only applies its update rule.
  """
  leaves, treedef = jax.tree.flatten(params)
  tensors = [torch.tensor(np.array(x), requires_grad=True) for x in leaves]
  optimizer = make_optimizer(tensors)
  scheduler = make_scheduler(optimizer)
  grad_fn = _jitted_grad(loss_fn)

  def snapshot():
    return treedef.unflatten([jnp.asarray(t.detach().numpy().copy()) for t in tensors])

  path = []
  for _ in range(steps):
    for t, g in zip(tensors, jax.tree.leaves(grad_fn(snapshot()))):
      t.grad = torch.from_numpy(np.array(g))
    optimizer.step()
    if scheduler is not None:
      scheduler.step()
    path.append(snapshot())
  return path


@contextlib.contextmanager
def precision(dtype):
  """x64 on or off for JAX, and torch's default dtype set to match, so that torch's
  scalar state (NAdam's running product of momentum coefficients) has the params' dtype."""
  previous = torch.get_default_dtype()
  torch.set_default_dtype(getattr(torch, dtype))
  try:
    with jax.enable_x64(dtype == "float64"):
      yield
  finally:
    torch.set_default_dtype(previous)


def both_trajectories(ours, make_optimizer, make_scheduler, dtype):
  params = make_params(jnp.dtype(dtype))
  return (trajectory(ours, params),
          torch_trajectory(make_optimizer, make_scheduler, params))


@pytest.mark.parametrize("name, dtype", [(name, "float64") for name in CASES] +
                         [(name, "float32") for name in FLOAT32])
def test_matches_torch(name, dtype):
  ours, make_optimizer, make_scheduler, tol = CASES[name]
  with precision(dtype):
    ours, theirs = both_trajectories(ours(), make_optimizer, make_scheduler, dtype)
  assert_trajectories_close(ours, theirs, dtype, tol[dtype])


@pytest.mark.parametrize("ours, theirs", [
    # Adagrad's eps inside the sqrt (gradtx) vs outside (torch), eps=1e-3.
    (lambda: gtx.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-3),
     lambda ps: torch.optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.1, eps=1e-3,
                                    foreach=False)),
    # Optax 0.2.8's rprop, which lags one step behind the paper's.
    (lambda: optax.rprop(LR), lambda ps: torch.optim.Rprop(ps, lr=LR, foreach=False)),
    # RAdam rectifying from rho_t >= 6 instead of torch's rho_t > 5.
    (lambda: gtx.radam(LR, eps=0.0, threshold=6.0),
     lambda ps: torch.optim.RAdam(ps, lr=LR, eps=0.0, foreach=False)),
], ids=["adagrad_eps_placement", "optax_rprop_lag", "radam_threshold"])
def test_harness_detects_a_different_rule(ours, theirs):
  """The float64 tolerance tells apart rules that differ only by a convention."""
  with precision("float64"):
    path_ours, path_theirs = both_trajectories(ours(), theirs, _no_scheduler, "float64")
  with pytest.raises(AssertionError):
    assert_trajectories_close(path_ours, path_theirs, "float64", TIGHT["float64"])


def test_adadelta_without_learning_rate_descends_as_the_paper():
  """Oracle: torch.optim.Adadelta(lr=1.0), i.e. Zeiler 2012 Algorithm 1 (``x += dx`` with
  ``dx = -RMS[dx]/RMS[g] * g``), which gradtx's docstring promises for the default
  ``learning_rate=None`` ("``lr=None``: ``p -= d``, the paper's rule")."""
  with precision("float64"):
    ours, theirs = both_trajectories(
        gtx.adadelta(), lambda ps: torch.optim.Adadelta(ps, lr=1.0, rho=0.9, eps=1e-6,
                                                        foreach=False),
        _no_scheduler, "float64")
  assert_trajectories_close(ours, theirs, "float64", TIGHT["float64"])

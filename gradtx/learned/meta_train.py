"""Meta-training: learning a learned optimizer's weights by gradient descent.

Andrychowicz et al. 2016, §2 and §3: the meta-loss of the weights ``phi`` is the sum of
the optimizee's losses along its trajectory, ``L(phi) = E_f [sum_t f(theta_t)]`` with
``theta_{t+1} = theta_t + g_phi(grad f(theta_t))``, averaged over a batch of problems
drawn from a family. The trajectory (the *horizon*, 100 steps in the paper) is cut into
*unrolls* of 20 steps: each unroll runs in one ``lax.scan``, its summed loss is
differentiated with respect to ``phi`` through all of its steps (truncated
backpropagation through time), and an optimizer (gradtx's Adam) updates ``phi``; the
optimizee's params and the LSTM's state are carried to the next unroll without gradient.
After a horizon a new batch of problems is drawn.

:func:`meta_train` follows the paper (its §2.1, the dashed edges of Figure 2) and drops
the derivative of each gradient ``grad f(theta_t)`` with respect to ``phi``
(``first_order=True``): the second derivatives of ``f`` are left out. ``first_order=False``
follows the exact meta-gradient instead. Exact is not better here: on the quadratics,
2,000 meta-steps with the exact meta-gradient left the held-out loss after 100 steps at
1.7, against 0.11 with the paper's approximation (gradients through 20 steps of a
chaotic recurrence have a large variance). For the hierarchical optimizer it is the
other way round: the first-order meta-gradient made it worse at every meta learning rate
tried, and its shipped weights were trained with the exact one
(``python -m gradtx.learned --optimizer hierarchical``). :func:`meta_loss` is exact by
default, so that its gradient is its derivative.

The same loop trains the hierarchical RNN optimizer of Wichrowska et al. 2017
(``optimizer="hierarchical"``), whose paper's meta-loss is the mean *log* loss over the
unroll (``log_loss=True``, its default there: every problem counts by its relative
progress, whatever its loss's scale), on a mixture of problem families (a sequence of
families, one per horizon, in turn), with the meta-gradient clipped by its global norm
and non-finite meta-gradients skipped (``clip_meta_gradient``).

Truncated unrolls have a short-horizon bias (Wu et al. 2018, "Understanding Short-Horizon
Bias in Stochastic Meta-Optimization"): a 20-step meta-loss rewards steps that help
within 20 steps, not after 200. :func:`meta_train` can therefore select its result on a
*validation* set of problems (``validation``, ``validate_every``): every
``validate_every`` meta-steps, and before the first, the meta-parameters run
``validation_steps`` full steps on ``validation_problems`` problems of each validation
family, drawn from a stream of their own (neither the training's nor
:func:`~gradtx.learned.evaluate`'s), and the meta-parameters with the lowest validation
score (the mean over families of the log of the mean final loss) are returned, the
initial ones included: when no meta-step improved on them, the result *is* the
initialisation (``history["best_step"] == 0``).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx
from gradtx.learned.hierarchical import (hierarchical_optimizer,
                                         init_hierarchical_meta_params)
from gradtx.learned.lstm import MetaParams, init_meta_params, lstm_optimizer
from gradtx.learned.problems import ProblemFamily, get_family, sample_problems

# Training and evaluation draw problems from different streams of the same seed, so that
# evaluation problems are held out whatever the seeds.
TRAIN_STREAM, EVAL_STREAM, INIT_STREAM, VALID_STREAM = 0, 1, 2, 3


def problem_key(seed: int, stream: int) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), stream)


OPTIMIZERS = ("lstm", "hierarchical")
"""The learned optimizers :func:`meta_train` trains."""


def learned_optimizer(optimizer: str, meta_params: MetaParams, p: float = 10.0,
                      output_scale: float = 0.1) -> gtx.GradientTransformation:
  """The transform of ``optimizer`` (``"lstm"`` or ``"hierarchical"``) with ``meta_params``;
  ``p`` and ``output_scale`` are the LSTM's (the hierarchical optimizer has none)."""
  if optimizer == "lstm":
    return lstm_optimizer(meta_params, p, output_scale)
  if optimizer == "hierarchical":
    return hierarchical_optimizer(meta_params)
  raise ValueError(f"unknown optimizer {optimizer!r}; use one of {list(OPTIMIZERS)}")


class MetaTrainResult(NamedTuple):
  """What :func:`meta_train` returns; unpacks as ``meta_params, history = ...``.

  Attributes:
    meta_params: the trained meta-parameters (a dict of float32 arrays).
    history: ``{"meta_loss": (steps,), "loss": (steps,)}`` NumPy arrays: per meta-step,
      the unroll's meta-loss (the optimizee losses summed over the unroll, averaged over
      the batch of problems) and the mean optimizee loss at the unroll's end. With
      validation, also ``"validation_step"`` (the meta-steps validated, 0 = the initial
      meta-parameters), ``"validation_score"`` (their scores) and ``"best_step"`` (the
      meta-step whose meta-parameters were returned).
  """

  meta_params: MetaParams
  history: dict[str, np.ndarray]


def _unroll_one(meta_params, family, data, params, state, start, *, unroll, horizon,
                first_order, p, output_scale, optimizer="lstm", log_loss=False):
  """``unroll`` steps of one problem from step ``start``: the summed losses
  ``f(theta_start) + ... + f(theta_end)`` (with ``log_loss``, the mean of their logs)
  and the final params, state and loss. Steps at or beyond ``horizon`` are not taken."""
  tx = learned_optimizer(optimizer, meta_params, p, output_scale)
  # A problem's first unroll starts from the optimizer's initial state made here, so that
  # the meta-gradient reaches the learned initial state (the hierarchical optimizer's
  # initial hidden states and learning rate; the LSTM's initial state is zeros).
  state = jax.tree.map(lambda fresh, carried: jnp.where(start == 0, fresh, carried),
                       tx.init(params), state)

  def step(carry, t):
    params, state = carry
    value, grad = jax.value_and_grad(family.loss)(params, data, t)
    if first_order:
      grad = jax.lax.stop_gradient(grad)
    updates, new_state = tx.update(grad, state, params)
    active = t < horizon
    keep = lambda new, old: jax.tree.map(  # noqa: E731
        lambda a, b: jnp.where(active, a, b), new, old)
    carry = (keep(gtx.apply_updates(params, updates), params), keep(new_state, state))
    return carry, jnp.where(active, value, 0.0)

  (params, state), values = jax.lax.scan(step, (params, state),
                                         start + jnp.arange(unroll))
  final = family.loss(params, data, jnp.minimum(start + unroll, horizon))
  if log_loss:
    # The mean of log f over the steps taken and the end; inactive steps count nothing.
    active = start + jnp.arange(unroll) < horizon
    logs = jnp.where(active, jnp.log(jnp.where(active, values, 1.0)), 0.0)
    return (jnp.sum(logs) + jnp.log(final)) / (jnp.sum(active) + 1), (params, state, final)
  return jnp.sum(values) + final, (params, state, final)


def _unroll_batch(meta_params, family, data, params, state, start, **options):
  """:func:`_unroll_one` over a batch of problems: mean meta-loss, carries, mean loss."""
  losses, (params, state, final) = jax.vmap(
      lambda d, x, s: _unroll_one(meta_params, family, d, x, s, start, **options))(
          data, params, state)
  return jnp.mean(losses), (params, state, jnp.mean(final))


def _default_meta_optimizer(meta_learning_rate, clip_meta_gradient):
  adam = gtx.adam(meta_learning_rate)
  if clip_meta_gradient is None:
    return adam
  return gtx.chain(gtx.clip_by_global_norm(clip_meta_gradient), adam)


@functools.partial(jax.jit, static_argnames=("family", "meta_optimizer", "meta_learning_rate",
                                             "clip_meta_gradient", "unroll", "horizon",
                                             "first_order", "p", "output_scale",
                                             "optimizer", "log_loss"))
def _train_step(meta_params, opt_state, data, params, state, start, *, family,
                meta_optimizer, meta_learning_rate, clip_meta_gradient, **options):
  """One meta-step: an unroll on a batch of problems, then the meta-optimizer's update
  (with ``clip_meta_gradient``, none where the meta-gradient is not finite)."""
  (loss, (params, state, final)), grads = jax.value_and_grad(_unroll_batch, has_aux=True)(
      meta_params, family, data, params, state, start, **options)
  meta_optimizer = meta_optimizer if meta_optimizer is not None else _default_meta_optimizer(
      meta_learning_rate, clip_meta_gradient)
  updates, new_opt_state = meta_optimizer.update(grads, opt_state, meta_params)
  new_meta_params = gtx.apply_updates(meta_params, updates)
  if clip_meta_gradient is not None:
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    keep = lambda new, old: jax.tree.map(  # noqa: E731
        lambda a, b: jnp.where(finite, a, b), new, old)
    new_meta_params, new_opt_state = keep(new_meta_params, meta_params), keep(
        new_opt_state, opt_state)
  return new_meta_params, new_opt_state, params, state, loss, final


@functools.partial(jax.jit, static_argnames=("family", "batch_size", "p", "output_scale",
                                             "optimizer"))
def _new_problems(key, meta_params, *, family, batch_size, p, output_scale, optimizer="lstm"):
  data, params = sample_problems(family, key, batch_size)
  tx = learned_optimizer(optimizer, meta_params, p, output_scale)
  return data, params, jax.vmap(tx.init)(params)


@functools.partial(jax.jit, static_argnames=("family", "steps", "optimizer"))
def _validation_loss(meta_params, data, params, *, family, steps, optimizer):
  """Mean over problems of ``family.eval_loss`` after ``steps`` steps of the optimizer."""
  tx = learned_optimizer(optimizer, meta_params)

  def one(data, params):
    def step(carry, t):
      params, state = carry
      updates, state = tx.update(jax.grad(family.loss)(params, data, t), state, params)
      return (gtx.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    return family.eval_loss(params, data)

  return jnp.mean(jax.vmap(one)(data, params))


def meta_loss(meta_params: MetaParams, problem_family: str | ProblemFamily,
              key: jax.Array, *, batch_size: int = 8, unroll: int = 20,
              first_order: bool = False, p: float = 10.0,
              output_scale: float = 0.1, optimizer: str = "lstm",
              log_loss: bool | None = None) -> jax.Array:
  """The meta-loss of the first unroll on ``batch_size`` problems drawn with ``key``.

  ``mean over problems of f(theta_0) + f(theta_1) + ... + f(theta_unroll)``, the
  trajectory made by ``lstm_optimizer(meta_params, p, output_scale)`` (or
  ``hierarchical_optimizer(meta_params)`` with ``optimizer="hierarchical"``) from the
  problems' initial params; with ``log_loss`` (default: for the hierarchical optimizer)
  the mean over problems of ``(log f(theta_0) + ... + log f(theta_unroll)) / (unroll + 1)``.
  Differentiable in ``meta_params``: its gradient is the exact
  meta-gradient, or with ``first_order=True`` (the value is the same) the paper's
  approximation that :func:`meta_train` follows by default, which treats each
  ``grad f(theta_t)`` as independent of ``meta_params``.
  """
  family = get_family(problem_family)
  data, params = sample_problems(family, key, batch_size)
  state = jax.vmap(learned_optimizer(optimizer, meta_params, p, output_scale).init)(params)
  log_loss = optimizer == "hierarchical" if log_loss is None else log_loss
  loss, _ = _unroll_batch(meta_params, family, data, params, state, 0, unroll=unroll,
                          horizon=unroll, first_order=first_order, p=p,
                          output_scale=output_scale, optimizer=optimizer, log_loss=log_loss)
  return loss


def _families(problem_family) -> list[ProblemFamily]:
  """One family, or a sequence of them; a ``(name, kwargs)`` pair is one family."""
  if isinstance(problem_family, (str, ProblemFamily)) or (
      isinstance(problem_family, (tuple, list)) and len(problem_family) == 2
      and isinstance(problem_family[0], str) and isinstance(problem_family[1], dict)):
    return [get_family(problem_family)]
  return [get_family(family) for family in problem_family]


@gtx.hyperparameters(steps="int >= 0", unroll="int >= 1", horizon="int >= 1",
                     batch_size="int >= 1", log_every="int >= 0",
                     meta_learning_rate="(0, inf)", clip_meta_gradient="(0, inf) | None",
                     init_learning_rate="(0, inf)", validate_every="int >= 0",
                     validation_problems="int >= 1", validation_steps="int >= 1",
                     schedules=False)
def meta_train(problem_family: str | ProblemFamily | Sequence[str | ProblemFamily] = "quadratic",
               *, steps: int = 1000,
               unroll: int = 20, horizon: int = 100, batch_size: int = 64,
               meta_learning_rate: float = 1e-3, seed: int = 0,
               meta_params: MetaParams | None = None,
               meta_optimizer: gtx.GradientTransformation | None = None,
               first_order: bool = True, hidden_size: int = 20, num_layers: int = 2,
               p: float = 10.0, output_scale: float = 0.1, log_every: int = 0,
               callback: Callable[[int, dict[str, float]], Any] | None = None,
               optimizer: str = "lstm", log_loss: bool | None = None,
               clip_meta_gradient: float | None = None, init_learning_rate: float = 0.1,
               validation: Sequence[str | ProblemFamily] | str | ProblemFamily | None = None,
               validate_every: int = 0, validation_problems: int = 16,
               validation_steps: int = 200,
               ) -> MetaTrainResult:
  """Meta-trains a learned optimizer (the coordinatewise LSTM by default) on problems.

  Each of the ``steps`` meta-steps runs one unroll of ``unroll`` optimizee steps on a
  batch of ``batch_size`` problems (vmapped) in one ``lax.scan``, and updates the
  meta-parameters with ``meta_optimizer`` (default: gradtx's Adam with
  ``meta_learning_rate``) on the gradient of the unroll's meta-loss (see
  :func:`meta_loss`). Every ``ceil(horizon / unroll)`` meta-steps a fresh batch of
  problems is drawn (from the next family, when ``problem_family`` is a sequence).
  Deterministic given ``seed``: two calls with the same arguments return the same
  meta-parameters, bit for bit, on the same machine.

  Args:
    problem_family: a :class:`ProblemFamily` or its name (see
      :func:`~gradtx.learned.get_family`), or a sequence of them, used in turn, one per
      horizon.
    steps: number of meta-steps (updates of the meta-parameters).
    unroll: optimizee steps per truncation (the paper's 20).
    horizon: optimizee steps per problem (the paper's 100).
    batch_size: problems per meta-step.
    meta_learning_rate: Adam's learning rate on the meta-parameters.
    seed: seeds the initial meta-parameters and the problems.
    meta_params: meta-parameters to start from (default: :func:`init_meta_params`).
    meta_optimizer: replaces the default Adam.
    first_order: the paper's meta-gradient, which drops second derivatives (default);
      ``False`` for the exact one.
    hidden_size, num_layers: the LSTM's size when starting from scratch.
    p, output_scale: passed to :func:`lstm_optimizer`.
    log_every: print progress every this many meta-steps (0: never).
    callback: called as ``callback(step, {"meta_loss": ..., "loss": ...})`` after every
      meta-step (``step`` from 1).
    optimizer: ``"lstm"`` (:func:`~gradtx.learned.lstm_optimizer`) or ``"hierarchical"``
      (:func:`~gradtx.learned.hierarchical_optimizer`).
    log_loss: the meta-loss is the mean log loss over the unroll instead of the summed
      loss (default: for the hierarchical optimizer, as Wichrowska et al.).
    clip_meta_gradient: clip the meta-gradient to this global norm before the default
      Adam, and skip meta-steps whose meta-gradient is not finite (default: neither).
    init_learning_rate: the hierarchical optimizer's initial learning rate when starting
      from scratch (:func:`~gradtx.learned.init_hierarchical_meta_params`).
    validation: problem families (as ``problem_family``) to select the result on; with
      ``validate_every > 0``, the meta-parameters are scored before the first meta-step
      and every ``validate_every`` meta-steps (and after the last) by the mean over
      these families of ``log(mean final loss)`` after ``validation_steps`` steps on
      ``validation_problems`` problems each (drawn once, from their own stream), and the
      best scored ones are returned, possibly the initial ones.
    validate_every, validation_problems, validation_steps: see ``validation``.

  Returns:
    :class:`MetaTrainResult` ``(meta_params, history)``.
  """
  families = _families(problem_family)
  if not families:
    raise ValueError("meta_train: problem_family is an empty sequence")
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"meta_train: unknown optimizer {optimizer!r}; use one of "
                     f"{list(OPTIMIZERS)}")
  if meta_params is None:
    key = problem_key(seed, INIT_STREAM)
    meta_params = (init_meta_params(key, hidden_size, num_layers) if optimizer == "lstm"
                   else init_hierarchical_meta_params(key, learning_rate=init_learning_rate))
  meta_params = jax.tree.map(jnp.asarray, meta_params)
  log_loss = optimizer == "hierarchical" if log_loss is None else bool(log_loss)
  clip = None if clip_meta_gradient is None else float(clip_meta_gradient)
  meta_opt = meta_optimizer if meta_optimizer is not None else _default_meta_optimizer(
      meta_learning_rate, clip)
  # Static (hashable) settings, so that the compiled steps are reused by later calls.
  static = dict(meta_optimizer=meta_optimizer, meta_learning_rate=float(
      meta_learning_rate), clip_meta_gradient=clip, unroll=unroll, horizon=horizon,
                first_order=bool(first_order), p=float(p), output_scale=float(output_scale),
                optimizer=optimizer, log_loss=log_loss)

  opt_state = jax.jit(meta_opt.init)(meta_params)  # one compilation, not one per leaf
  train_key = problem_key(seed, TRAIN_STREAM)
  segments = math.ceil(horizon / unroll)
  history = {"meta_loss": np.zeros(steps), "loss": np.zeros(steps)}
  start_time = time.perf_counter()
  validating = validation is not None and validate_every > 0
  if validating:
    valid_key = problem_key(seed, VALID_STREAM)
    valid_sets = [(family, sample_problems(family, jax.random.fold_in(valid_key, j),
                                           validation_problems))
                  for j, family in enumerate(_families(validation))]
    history.update(validation_step=[], validation_score=[])

    def validate(step):
      score = float(np.mean([np.log(float(_validation_loss(
          meta_params, data, params, family=family, steps=validation_steps,
          optimizer=optimizer))) for family, (data, params) in valid_sets]))
      score = score if np.isfinite(score) else np.inf
      history["validation_step"].append(step)
      history["validation_score"].append(score)
      if log_every:
        print(f"meta_train validation after {step} meta-steps: score {score:.4g}"
              f"  ({time.perf_counter() - start_time:.1f} s)", flush=True)
      return score

    best_score, best_meta_params, best_step = validate(0), meta_params, 0
  for i in range(steps):
    segment = i % segments
    if segment == 0:
      family = families[(i // segments) % len(families)]
      data, params, state = _new_problems(
          jax.random.fold_in(train_key, i // segments), meta_params, family=family,
          batch_size=batch_size, p=static["p"], output_scale=static["output_scale"],
          optimizer=optimizer)
    meta_params, opt_state, params, state, loss, final = _train_step(
        meta_params, opt_state, data, params, state, jnp.int32(segment * unroll),
        family=family, **static)
    history["meta_loss"][i], history["loss"][i] = float(loss), float(final)
    if callback is not None:
      callback(i + 1, {"meta_loss": history["meta_loss"][i], "loss": history["loss"][i]})
    if log_every and ((i + 1) % log_every == 0 or i + 1 == steps):
      print(f"meta_train[{family.name}] step {i + 1}/{steps}  meta-loss "
            f"{history['meta_loss'][i]:.4g}  loss after optimizee step "
            f"{min((segment + 1) * unroll, horizon)} {history['loss'][i]:.4g}  "
            f"({time.perf_counter() - start_time:.1f} s)", flush=True)
    if validating and ((i + 1) % validate_every == 0 or i + 1 == steps):
      score = validate(i + 1)
      if score < best_score:
        best_score, best_meta_params, best_step = score, meta_params, i + 1
  if validating:
    history = {**history, "validation_step": np.asarray(history["validation_step"]),
               "validation_score": np.asarray(history["validation_score"]),
               "best_step": best_step}
    meta_params = best_meta_params
    if log_every:
      print(f"meta_train: returning the meta-parameters after {best_step} meta-steps "
            f"(validation score {best_score:.4g})", flush=True)
  return MetaTrainResult(meta_params, history)

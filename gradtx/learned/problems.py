"""Problem families to meta-train and evaluate learned optimizers on.

A family is a distribution over optimisation problems ("optimizees"). The two of
Andrychowicz et al. 2016, §3.1 and §3.2:

* :func:`quadratic`: ``f(theta) = ||W theta - y||^2`` in 10 dimensions, ``W`` and ``y``
  with IID standard normal entries, ``theta`` starting at ``N(0, 0.01^2)`` (the
  initialisation of the authors' code);
* :func:`digits_mlp`: the paper's small MLP (one hidden layer of 20 sigmoid units,
  cross-entropy, minibatches of 128), on scikit-learn's 8x8 digits instead of MNIST, so
  that nothing is downloaded. A problem is a fresh initialisation and a fresh order of
  minibatches.

and, for the hierarchical optimizer's training mixture (Wichrowska et al. 2017 train on
many small problems), :func:`digits_convnet`: a small convolutional network on the same
digits.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx


class ProblemFamily(NamedTuple):
  """A distribution over problems, written as pure functions (vmappable over problems).

  Attributes:
    name: short name ("quadratic", "mlp").
    sample: ``key -> (data, params)``: a problem's data (a pytree of arrays) and its
      initial params.
    loss: ``(params, data, step) -> scalar``: the loss the optimizer sees at step ``step``
      (for stochastic problems, the minibatch of that step).
    eval_loss: ``(params, data) -> scalar``: the loss reported in evaluations (the full
      training set for stochastic problems; the same as ``loss`` otherwise).
  """

  name: str
  sample: Callable[[jax.Array], tuple[Any, gtx.Params]]
  loss: Callable[[gtx.Params, Any, jax.Array], jax.Array]
  eval_loss: Callable[[gtx.Params, Any], jax.Array]


@gtx.hyperparameters(num_dims="int >= 1", init_scale="[0, inf)", schedules=False)
def quadratic(num_dims: int = 10, init_scale: float = 0.01) -> ProblemFamily:
  """Random quadratics ``f(theta) = ||W theta - y||^2`` (Andrychowicz et al. 2016, §3.1).

  ``W`` is ``num_dims x num_dims`` and ``y`` has ``num_dims`` entries, all IID standard
  normal; ``theta_0 ~ N(0, init_scale^2)``.
  """

  def sample(key):
    kw, ky, kt = jax.random.split(key, 3)
    data = {"w": jax.random.normal(kw, (num_dims, num_dims)),
            "y": jax.random.normal(ky, (num_dims,))}
    return data, init_scale * jax.random.normal(kt, (num_dims,))

  def eval_loss(params, data):
    return jnp.sum((data["w"] @ params - data["y"])**2)

  def loss(params, data, step):
    del step
    return eval_loss(params, data)

  return ProblemFamily("quadratic", sample, loss, eval_loss)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
  try:
    from sklearn.datasets import load_digits
  except ImportError as error:  # scikit-learn is an optional dependency
    raise ImportError("digits_mlp needs scikit-learn: pip install scikit-learn") from error
  digits = load_digits()
  return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


def _digits_family(name: str, init: Callable[[jax.Array], tuple[gtx.Params, jax.Array]],
                   logits: Callable[[gtx.Params, jax.Array], jax.Array],
                   batch_size: int) -> ProblemFamily:
  """A classifier of the digits: ``logits(params, x)`` with ``x`` ``(n, 64)``, trained on
  mean softmax cross-entropy over minibatches of ``batch_size`` images drawn uniformly
  (with replacement) at every step; ``eval_loss`` on all 1,797 images. ``init(key)``
  gives the initial params and the key of the problem's minibatch order."""
  x_all, y_all = _digits()
  num_examples = len(y_all)

  def sample(key):
    params, batch_key = init(key)
    return {"batch_key": jax.random.key_data(batch_key)}, params

  def cross_entropy(params, x, y):
    log_probs = jax.nn.log_softmax(logits(params, x))
    return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))

  def loss(params, data, step):
    key = jax.random.fold_in(jax.random.wrap_key_data(data["batch_key"]), step)
    index = jax.random.randint(key, (batch_size,), 0, num_examples)
    return cross_entropy(params, jnp.asarray(x_all)[index], jnp.asarray(y_all)[index])

  def eval_loss(params, data):
    del data
    return cross_entropy(params, jnp.asarray(x_all), jnp.asarray(y_all))

  return ProblemFamily(name, sample, loss, eval_loss)


@gtx.hyperparameters(hidden_size="int >= 1", batch_size="int >= 1", init_scale="(0, inf)",
                     schedules=False)
def digits_mlp(hidden_size: int = 20, batch_size: int = 128,
               init_scale: float = 1.0) -> ProblemFamily:
  """A one-hidden-layer sigmoid MLP on scikit-learn's digits (the paper's §3.2 MLP).

  64 inputs (pixels scaled to [0, 1]), ``hidden_size`` sigmoid units, 10 logits, mean
  softmax cross-entropy over a minibatch of ``batch_size`` images drawn uniformly (with
  replacement) at every step from the 1,797 digits. Weights start at
  ``N(0, init_scale^2/fan_in)``, biases at 0. ``eval_loss`` is the loss on all 1,797
  images.
  """

  def init(key):
    k1, k2, kb = jax.random.split(key, 3)
    return {"w1": init_scale * jax.random.normal(k1, (64, hidden_size)) / np.sqrt(64.0),
            "b1": jnp.zeros(hidden_size),
            "w2": init_scale * jax.random.normal(k2, (hidden_size, 10)) / np.sqrt(hidden_size),
            "b2": jnp.zeros(10)}, kb

  def logits(params, x):
    hidden = jax.nn.sigmoid(x @ params["w1"] + params["b1"])
    return hidden @ params["w2"] + params["b2"]

  return _digits_family("mlp", init, logits, batch_size)


@gtx.hyperparameters(channels="int >= 1", batch_size="int >= 1", init_scale="(0, inf)",
                     schedules=False)
def digits_convnet(channels: int = 4, batch_size: int = 32,
                   init_scale: float = 1.0) -> ProblemFamily:
  """A small convnet on scikit-learn's digits: 3x3 convolution (8x8x1 to 8x8x``channels``,
  "same" padding), ReLU, 2x2 average pooling, a dense layer to 10 logits.

  Trained like :func:`digits_mlp` (cross-entropy on minibatches of ``batch_size``).
  Weights start at ``N(0, init_scale^2/fan_in)``, biases at 0.
  """

  def init(key):
    k1, k2, kb = jax.random.split(key, 3)
    return {"conv": init_scale * jax.random.normal(k1, (3, 3, 1, channels)) / 3.0,
            "conv_bias": jnp.zeros(channels),
            "dense": init_scale * jax.random.normal(k2, (16 * channels, 10)) / np.sqrt(
                16.0 * channels),
            "dense_bias": jnp.zeros(10)}, kb

  def logits(params, x):
    images = x.reshape(-1, 8, 8, 1)
    features = jax.lax.conv_general_dilated(images, params["conv"], (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    features = jax.nn.relu(features + params["conv_bias"])
    pooled = features.reshape(-1, 4, 2, 4, 2, channels).mean(axis=(2, 4))
    return pooled.reshape(len(x), -1) @ params["dense"] + params["dense_bias"]

  return _digits_family("convnet", init, logits, batch_size)


FAMILIES: dict[str, Callable[[], ProblemFamily]] = {
    "quadratic": quadratic, "mlp": digits_mlp, "convnet": digits_convnet}


def get_family(family: str | ProblemFamily | tuple[str, dict[str, Any]]) -> ProblemFamily:
  """A :class:`ProblemFamily` from itself, its name (``"quadratic"``, ``"mlp"``,
  ``"convnet"``) or a ``(name, kwargs)`` pair such as ``("mlp", {"hidden_size": 8})``
  (the constructor's arguments; a JSON-serialisable way to name a variant).

  A name or pair gives the same object every time, so that compiled meta-training and
  evaluation steps (which are keyed on the family) are reused.
  """
  if isinstance(family, ProblemFamily):
    return family
  name, kwargs = ((family, {}) if isinstance(family, str) else
                  (family[0], dict(family[1])) if isinstance(family, (tuple, list))
                  and len(family) == 2 else (family, None))
  if name not in FAMILIES or kwargs is None:
    raise ValueError(f"unknown problem family {family!r}; use one of {sorted(FAMILIES)}, a "
                     "(name, kwargs) pair or a ProblemFamily")
  return _default_family(name, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=None)
def _default_family(name: str, kwargs: tuple[tuple[str, Any], ...] = ()) -> ProblemFamily:
  return FAMILIES[name](**dict(kwargs))


def sample_problems(family: ProblemFamily, key: jax.Array,
                    num_problems: int) -> tuple[Any, gtx.Params]:
  """``num_problems`` problems of ``family``: data and initial params, stacked on axis 0."""
  return jax.vmap(family.sample)(jax.random.split(key, num_problems))

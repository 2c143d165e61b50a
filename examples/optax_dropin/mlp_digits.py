"""An MLP classifier on scikit-learn's digits, written the way Optax's documentation
writes a training loop: ``optax.adamw`` with a warmup-cosine schedule, gradient
clipping, and ``optax.softmax_cross_entropy_with_integer_labels``.

It imports ``optax``; ``tests/test_optax_dropin.py`` runs it once with Optax and once
with ``import gradtx as optax`` and checks that both print the same numbers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits


def init_mlp(key, sizes):
  params = []
  for k, (n_in, n_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes, sizes[1:])):
    params.append({"w": jax.random.normal(k, (n_in, n_out)) * jnp.sqrt(2.0 / n_in),
                   "b": jnp.zeros(n_out)})
  return params


def predict(params, x):
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def main(steps=300, batch_size=128, seed=0):
  digits = load_digits()
  x = jnp.asarray(digits.data / 16.0, jnp.float32)
  y = jnp.asarray(digits.target)
  x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]

  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=3e-3, warmup_steps=30, decay_steps=steps, end_value=1e-4)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                          optax.adamw(learning_rate=schedule, weight_decay=1e-4))
  params = init_mlp(jax.random.key(seed), [64, 64, 10])
  opt_state = optimizer.init(params)

  def loss_fn(params, xb, yb):
    logits = predict(params, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  @jax.jit
  def train_step(params, opt_state, xb, yb):
    loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, loss, optax.global_norm(grads)

  rng = np.random.default_rng(seed)
  for step in range(steps):
    idx = rng.choice(len(y_train), batch_size, replace=False)
    params, opt_state, loss, grad_norm = train_step(params, opt_state, x_train[idx],
                                                    y_train[idx])
    if step % 100 == 0 or step == steps - 1:
      print(f"step {step:4d}  loss {float(loss):.6f}  grad norm {float(grad_norm):.6f}")
  accuracy = jnp.mean(jnp.argmax(predict(params, x_test), -1) == y_test)
  test_loss = loss_fn(params, x_test, y_test)
  print(f"test loss {float(test_loss):.6f}  test accuracy {float(accuracy):.4f}")
  return {"test_loss": float(test_loss), "test_accuracy": float(accuracy)}


if __name__ == "__main__":
  main()

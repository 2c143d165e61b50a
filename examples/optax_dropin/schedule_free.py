"""Schedule-free AdamW (Defazio et al. 2024) from ``optax.contrib``, as Optax's
documentation uses it: train with ``schedule_free_adamw`` (no learning-rate schedule
after the warmup), evaluate at ``schedule_free_eval_params`` (an MLP on scikit-learn's
digits).

It imports ``optax``; ``tests/test_optax_dropin.py`` runs it once with Optax and once
with ``import gradtx as optax`` and checks that both print the same numbers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits


def main(steps=300, batch_size=128, seed=0):
  digits = load_digits()
  x = jnp.asarray(digits.data / 16.0, jnp.float32)
  y = jnp.asarray(digits.target)
  x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]
  k1, k2 = jax.random.split(jax.random.key(seed))
  params = {"hidden": {"w": jax.random.normal(k1, (64, 32)) * 0.25, "b": jnp.zeros(32)},
            "out": {"w": jax.random.normal(k2, (32, 10)) * 0.25, "b": jnp.zeros(10)}}

  def predict(params, xb):
    h = jnp.tanh(xb @ params["hidden"]["w"] + params["hidden"]["b"])
    return h @ params["out"]["w"] + params["out"]["b"]

  def loss_fn(params, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(predict(params, xb), yb).mean()

  optimizer = optax.contrib.schedule_free_adamw(learning_rate=3e-3, warmup_steps=20,
                                                weight_decay=1e-4)
  opt_state = optimizer.init(params)

  @jax.jit
  def train_step(params, opt_state, xb, yb):
    loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  for step in range(steps):
    idx = rng.choice(len(y_train), batch_size, replace=False)
    params, opt_state, loss = train_step(params, opt_state, x_train[idx], y_train[idx])
    if step % 100 == 0 or step == steps - 1:
      print(f"step {step:4d}  loss {float(loss):.6f}")
  eval_params = optax.contrib.schedule_free_eval_params(opt_state, params)
  test_loss = loss_fn(eval_params, x_test, y_test)
  accuracy = jnp.mean(jnp.argmax(predict(eval_params, x_test), -1) == y_test)
  print(f"test loss {float(test_loss):.6f}  test accuracy {float(accuracy):.4f}")
  return {"test_loss": float(test_loss), "test_accuracy": float(accuracy)}


if __name__ == "__main__":
  main()

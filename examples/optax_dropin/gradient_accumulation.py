"""Gradient accumulation with ``optax.MultiSteps``, as Optax's documentation shows it:
four micro-batches of 32 make one step of Adam on a batch of 128 (logistic regression
on scikit-learn's digits, zeros against the rest).

It imports ``optax``; ``tests/test_optax_dropin.py`` runs it once with Optax and once
with ``import gradtx as optax`` and checks that both print the same numbers.
"""

import jax
import jax.numpy as jnp
import optax
from sklearn.datasets import load_digits


def main(steps=200, micro_batch=32, every_k=4):
  digits = load_digits()
  x = jnp.asarray(digits.data / 16.0, jnp.float32)
  y = jnp.asarray(digits.target == 0, jnp.float32)
  params = {"w": jnp.zeros(64), "b": jnp.zeros(())}

  optimizer = optax.MultiSteps(optax.adam(learning_rate=1e-2), every_k_schedule=every_k)
  opt_state = optimizer.init(params)

  def loss_fn(params, xb, yb):
    logits = xb @ params["w"] + params["b"]
    return optax.sigmoid_binary_cross_entropy(logits, yb).mean()

  @jax.jit
  def micro_step(params, opt_state, xb, yb):
    loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  updated = 0
  for step in range(steps):
    start = (step * micro_batch) % (len(y) - micro_batch)
    params, opt_state, loss = micro_step(params, opt_state, x[start:start + micro_batch],
                                         y[start:start + micro_batch])
    updated += int(optimizer.has_updated(opt_state))
    if step % 50 == 0 or step == steps - 1:
      print(f"micro-step {step:4d}  loss {float(loss):.6f}")
  full_loss = loss_fn(params, x, y)
  print(f"optimizer steps {updated}  loss on all digits {float(full_loss):.6f}")
  return {"optimizer_steps": updated, "loss": float(full_loss)}


if __name__ == "__main__":
  main()

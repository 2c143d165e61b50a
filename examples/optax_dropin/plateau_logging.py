"""Reading and scheduling hyperparameters the Optax way: ``optax.inject_hyperparams``
keeps SGD's learning rate in the state, ``optax.contrib.reduce_on_plateau`` shrinks the
step when the loss stalls, and ``optax.tree_utils.tree_get`` reads both for logging
(a linear least-squares fit).

It imports ``optax``; ``tests/test_optax_dropin.py`` runs it once with Optax and once
with ``import gradtx as optax`` and checks that both print the same numbers.
"""

import jax
import jax.numpy as jnp
import optax


def main(steps=150):
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (256, 8))
  y = x @ jax.random.normal(kw, (8,)) + 0.3 * jnp.sin(7 * x[:, 0])
  params = {"w": jnp.zeros(8), "b": jnp.zeros(())}

  optimizer = optax.chain(
      optax.inject_hyperparams(optax.sgd)(learning_rate=0.05, momentum=0.9),
      optax.contrib.reduce_on_plateau(factor=0.5, patience=5, min_scale=0.01))
  opt_state = optimizer.init(params)

  def loss_fn(params):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

  @jax.jit
  def train_step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state, loss

  for step in range(steps):
    params, opt_state, loss = train_step(params, opt_state)
    if step % 30 == 0 or step == steps - 1:
      lr = optax.tree_utils.tree_get(opt_state, "learning_rate")
      scale = optax.tree_utils.tree_get(opt_state, "scale")
      print(f"step {step:4d}  loss {float(loss):.8f}  lr {float(lr):.4f}  "
            f"plateau scale {float(scale):.4f}")
  return {"loss": float(loss_fn(params)),
          "scale": float(optax.tree_utils.tree_get(opt_state, "scale"))}


if __name__ == "__main__":
  main()

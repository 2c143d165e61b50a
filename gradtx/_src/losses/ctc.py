"""Connectionist temporal classification (CTC): the negative log-likelihood of a label
sequence summed over all its alignments with the frames, by the forward algorithm.

Reference: Graves et al., *Connectionist Temporal Classification: Labelling Unsegmented
Sequence Data with Recurrent Neural Networks*, ICML 2006.
"""

import jax
import jax.numpy as jnp

from gradtx._src.losses._checks import check_rank, check_same_shape


def _add_to_labelled_states(phi, score):
  """``phi`` (log-probabilities of the N+1 blank states) with ``score`` added in log
  space to the states after a label (all but the first)."""
  return jnp.concatenate([phi[:, :1], jnp.logaddexp(phi[:, 1:], score)], axis=-1)


def ctc_loss_with_forward_probs(
    logits: jax.typing.ArrayLike,
    logit_paddings: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    label_paddings: jax.typing.ArrayLike,
    *,
    blank_id: int = 0,
    log_epsilon: jax.typing.ArrayLike = -1e5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""The CTC loss and the forward log-probabilities it was computed from.

  The alignments of the labels ``y_1..y_N`` with the frames interleave blanks
  ``phi``; the forward algorithm tracks, at frame ``t`` and for ``n`` labels emitted so
  far,

  .. math::
    \alpha_{\mathrm{BLANK}}(t, n) = \sum_{\pi_{1:t-1}} p(\pi_t = \phi | \ldots), \quad
    \alpha_{\mathrm{LABEL}}(t, n) = \sum_{\pi_{1:t-1}} p(\pi_t = y_n | \ldots),

  in log space. From a blank state the next frame may repeat the blank or emit the next
  label; from a label state it may repeat the label, emit a blank, or emit the next
  label unless that label is the same one (which needs a blank in between). Padded
  frames leave the probabilities unchanged. The loss of a sequence is
  ``-log alpha_BLANK(T, N_b)`` after the last blank transition, ``N_b`` its number of
  unpadded labels.

  Args:
    logits: ``(B, T, K)`` logits over K classes, the blank included.
    logit_paddings: ``(B, T)``, 1.0 where a frame is padding, else 0.0.
    labels: ``(B, N)`` integer labels.
    label_paddings: ``(B, N)``, 1.0 where a label is padding, else 0.0; padding only on
      the right.
    blank_id: the class of the blank.
    log_epsilon: the finite stand-in for ``log 0``.

  Returns:
    ``(loss, logalpha_blank, logalpha_nonblank)``: the ``(B,)`` losses and the
    ``(T, B, N+1)`` and ``(T, B, N)`` forward log-probabilities.
  """
  check_rank(logits, 3)
  check_rank(labels, 2)
  check_same_shape(labels, label_paddings)
  check_same_shape(logits[..., 0], logit_paddings)
  batch_size, _, num_classes = logits.shape
  label_batch_size, max_label_len = labels.shape
  if label_batch_size != batch_size:
    raise ValueError(f"Expected `labels` to have batch size {batch_size}, got"
                     f" {label_batch_size}.")

  logprobs = jax.nn.log_softmax(logits)
  label_lens = max_label_len - jnp.sum(label_paddings, axis=1).astype(jnp.int32)
  # repeat[b, n] = 1 where label n+1 equals label n (no direct label-to-label step).
  repeat = (labels[:, :-1] == labels[:, 1:]).astype(jnp.float32)
  repeat = jnp.pad(repeat, ((0, 0), (0, 1)))

  # Per frame, time-major: log p(blank) [T, B, 1] and log p(label n) [T, B, N].
  logprob_blank = jnp.transpose(logprobs[:, :, blank_id:blank_id + 1], (1, 0, 2))
  one_hot_labels = jax.nn.one_hot(labels, num_classes=num_classes)
  logprob_label = jnp.transpose(
      jnp.einsum("btk,bnk->btn", logprobs, one_hot_labels), (1, 0, 2))

  # Before the first frame: in the blank state with no label emitted, surely.
  blank_init = (jnp.ones((batch_size, max_label_len + 1)) * log_epsilon).at[:, 0].set(0.0)
  label_init = jnp.ones((batch_size, max_label_len)) * log_epsilon

  def step(carry, frame):
    prev_blank, prev_label = carry
    emit_label, emit_blank, pad = frame
    # A label state may hand over to the blank state after it, unless the next label
    # repeats it (then log_epsilon * repeat makes that path negligible).
    blank = _add_to_labelled_states(prev_blank, prev_label + log_epsilon * repeat)
    # Label n: from the blank state before it, or staying on label n.
    label = jnp.logaddexp(blank[:, :-1] + emit_label, prev_label + emit_label)
    # Blank: staying, or emitting a blank after label n when the next one repeats it.
    next_blank = _add_to_labelled_states(
        blank + emit_blank, prev_label + emit_blank + log_epsilon * (1.0 - repeat))
    pad = pad.reshape((batch_size, 1))
    label = pad * prev_label + (1.0 - pad) * label
    next_blank = pad * prev_blank + (1.0 - pad) * next_blank
    return (next_blank, label), (next_blank, label)

  frames = (logprob_label, logprob_blank, logit_paddings.transpose((1, 0)))
  _, (logalpha_blank, logalpha_label) = jax.lax.scan(step, (blank_init, label_init),
                                                     frames)
  # The last frame's label states still hand over to the blank state after them.
  last_blank = _add_to_labelled_states(logalpha_blank[-1], logalpha_label[-1])
  logalpha_blank = logalpha_blank.at[-1].set(last_blank)

  at_label_len = jax.nn.one_hot(label_lens, num_classes=max_label_len + 1)
  loss = -jnp.einsum("bn,bn->b", last_blank, at_label_len)
  return loss, logalpha_blank, logalpha_label


def ctc_loss(
    logits: jax.typing.ArrayLike,
    logit_paddings: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    label_paddings: jax.typing.ArrayLike,
    *,
    blank_id: int = 0,
    log_epsilon: jax.typing.ArrayLike = -1e5,
) -> jax.Array:
  """The ``(B,)`` CTC losses alone; see :func:`ctc_loss_with_forward_probs`."""
  loss, _, _ = ctc_loss_with_forward_probs(logits, logit_paddings, labels, label_paddings,
                                           blank_id=blank_id, log_epsilon=log_epsilon)
  return loss

"""When XLA fuses a packed gradient's concatenation: counts, not timings.

The gradient of a loss written on ``gtx.unpack(packed)`` is assembled by one
concatenation per buffer. This compiles the donated Adam train step of
``train_step.py``'s synthetic loss on 48 leaves of 2000 floats, packed ``k`` leaves per
buffer (``labels`` that group consecutive leaves), and prints for each ``k`` the
concatenations the compiled step runs as passes of their own (not fused into the kernels
that compute their pieces), the copies, and XLA's peak-memory estimate::

    python benchmarks/concat_fusion.py
    python benchmarks/concat_fusion.py --leaves 96 --size 40000 --per-buffer 4 8 9 96

Compiles only (a few seconds per ``k``); the counts do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import re

import jax

import gradtx as gtx
from optimizer_step import compile_donated  # the script's folder is on sys.path
from train_step import synthetic, unfused_concatenates


def counts(leaves: int, size: int, per_buffer: int) -> tuple[int, int, int, float]:
  """``(buffers, unfused concatenates, copies, peak MiB)`` of the packed train step."""
  params, batch, loss, _ = synthetic(leaves, size)
  flat, treedef = jax.tree.flatten(params)
  labels = jax.tree.unflatten(treedef, [i // per_buffer for i in range(len(flat))])
  packed = gtx.pack(params, labels)
  tx = gtx.adam(1e-3)

  def step(packed, state, batch):
    value, grads = jax.value_and_grad(lambda q: loss(gtx.unpack(q), batch))(packed)
    updates, state = tx.update(grads, state, packed)
    return gtx.apply_updates(packed, updates), state, value

  compiled, _, peak = compile_donated(step, packed, tx.init(packed), batch)
  text = compiled.as_text()
  copies = len(re.findall(r" copy\(", text[text.index("ENTRY"):]))
  return len(packed.buffers), unfused_concatenates(text), copies, peak / 2**20


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--leaves", type=int, default=48, help="Leaves (default: 48).")
  parser.add_argument("--size", type=int, default=2000,
                      help="Floats per leaf (default: 2000).")
  parser.add_argument("--per-buffer", nargs="+", type=int,
                      default=[4, 6, 7, 8, 9, 10, 12, 16, 48],
                      help="Leaves per buffer to try (default: 4 6 7 8 9 10 12 16 48).")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}: the Adam train step on "
        f"{args.leaves} leaves of {args.size} floats, packed k leaves per buffer")
  print(f"  {'k':>4s} {'buffers':>8s} {'unfused concatenates':>21s} {'copies':>7s} "
        f"{'peak MiB':>9s}")
  for k in args.per_buffer:
    buffers, concats, copies, peak = counts(args.leaves, args.size, k)
    print(f"  {k:4d} {buffers:8d} {concats:21d} {copies:7d} {peak:9.2f}")


if __name__ == "__main__":
  main()

"""GraLoRA math on tensors, with `keras.ops` only.

Shapes follow PEFT's layout so adapters convert 1:1:

- `a`: `(k, in // k, r)`; block `a[p]` maps input block `p` to `r`
  features whose axis splits as `(k, s)`, the first factor naming the
  output block it feeds (`s = r // k`).
- `b`: `(k, r, out // k)`; block `b[j]` maps `r` features to output
  block `j`; its `r` axis splits as `(k, s)`, the first factor naming the
  input block it comes from.

So grid cell `(p, j)` of the update is `a[p][:, j*s:(j+1)*s] @ b[j][p*s:(p+1)*s]`.
"""

import math

from keras import ops


def block_forward(x, a, b):
    """The block adapter applied to activations: `x [..., in] -> [..., out]`.

    Written as two batched matmuls over blocks with explicit transposes,
    rather than einsums: measured in `benchmarks/`, this is the fastest form
    on all three backends, and TensorFlow's einsum with `...` was over 10x
    slower in training.
    """
    k, block_in, r = a.shape
    s, block_out = r // k, b.shape[-1]
    lead = tuple(ops.shape(x)[:-1])
    x = ops.transpose(ops.reshape(x, (-1, k, block_in)), (1, 0, 2))  # [p, n, i]
    xa = ops.reshape(ops.matmul(x, a), (k, -1, k, s))  # [p, n, j, s]
    # Cross-block exchange: output block j gathers slice j of every input block p.
    xa = ops.reshape(ops.transpose(xa, (2, 1, 0, 3)), (k, -1, r))  # [j, n, (p, s)]
    y = ops.transpose(ops.matmul(xa, b), (1, 0, 2))  # [n, j, o]
    return ops.reshape(y, lead + (k * block_out,))


def delta_matrix(a, b, scale, hybrid_a=None, hybrid_b=None):
    """`scale * (block update + hybrid_a @ hybrid_b)` as an `[in, out]` matrix.

    One batched matmul over input blocks, `[in/k, r(+h)] @ [r(+h), out]`,
    whose output is already the final row-major layout; `b` is spread into
    a block-diagonal `[r, out]` per input block (zeros outside cell `(p, j)`),
    the hybrid rows ride along, and `scale` is folded into the small side.
    That is `k` times the minimal multiply-adds, yet measured faster on every
    backend than an einsum over grid cells, whose output needs a transpose
    of the whole matrix (`benchmarks/delta.py`: 4096 x 4096, 74 -> 41 ms on torch).
    """
    k, block_in, r = a.shape
    s, block_out = r // k, b.shape[-1]
    # cols[p, (j, s), (j', o)] = b[j, p*s + s, o] if j == j' else 0
    b = ops.transpose(ops.reshape(b * scale, (k, k, s, block_out)), (1, 0, 2, 3))  # [p, j, s, o]
    mask = ops.reshape(ops.eye(k, dtype=a.dtype), (1, k, 1, k, 1))
    cols = ops.reshape(ops.expand_dims(b, 3) * mask, (k, r, k * block_out))
    rows = a
    if hybrid_a is not None:
        hybrid_r = hybrid_a.shape[-1]
        rows = ops.concatenate([a, ops.reshape(hybrid_a, (k, block_in, hybrid_r))], axis=-1)
        hybrid_cols = ops.broadcast_to(hybrid_b * scale, (k, hybrid_r, k * block_out))
        cols = ops.concatenate([cols, hybrid_cols], axis=1)
    return ops.reshape(ops.matmul(rows, cols), (k * block_in, k * block_out))


def kaiming_uniform_bound(fan_in):
    """Bound of torch's `kaiming_uniform_(a=sqrt(5))`, PEFT's adapter init."""
    return 1.0 / math.sqrt(fan_in)

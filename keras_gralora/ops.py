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


def block_delta(a, b):
    """The block adapter as an `[in, out]` matrix (unscaled).

    Costs `in * out * r / k` multiply-adds: each output cell only meets the
    `s` ranks of its own grid cell.
    """
    k, block_in, r = a.shape
    s, block_out = r // k, b.shape[-1]
    delta = ops.einsum(
        "pijs,jpso->pijo",
        ops.reshape(a, (k, block_in, k, s)),
        ops.reshape(b, (k, k, s, block_out)),
    )
    return ops.reshape(delta, (k * block_in, k * block_out))


def kaiming_uniform_bound(fan_in):
    """Bound of torch's `kaiming_uniform_(a=sqrt(5))`, PEFT's adapter init."""
    return 1.0 / math.sqrt(fan_in)

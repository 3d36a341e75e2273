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

from keras_gralora.backend import dispatches_each_op, keep_tokens_sharded


def block_forward(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    """The scaled adapter applied to activations: `x [n, in] -> [n, out]`.

    Two batched matmuls, each over the `k` blocks, so the multiply-adds are
    the minimal `n * r * (in + out)` (chosen by measurement,
    `benchmarks/train_step.py`):
    1. over input blocks, `[p, n, in/k] @ [p, in/k, r(+h)]`; the hybrid `A`
       rides along, split by input block, so it costs no extra pass over
       `x` (its `k` partial sums are added afterwards);
    2. over output blocks, `[j, n, r(+h)] @ [j, r(+h), out/k]`, after the
       cross-block exchange; each output block also reads the hybrid
       features against its own columns of the hybrid `B`.
    """
    k, block_in, _ = a.shape
    x_blocks = ops.transpose(ops.reshape(x, (-1, k, block_in)), (1, 0, 2))  # [p, n, i]
    return block_output(ops.matmul(x_blocks, rows_by_input_block(a, hybrid_a)), b, scale, hybrid_b)


def block_output(xa, b, scale, hybrid_b=None):
    """The second product of `block_forward`, from `xa [p, n, r(+h)]`, input block `p`'s `A` features.

    `xa[..., r:]` are input block `p`'s partial sums of the hybrid features.
    Layers whose first product is no matmul (a convolution's `A`) call this
    with their own `xa`.
    """
    k, r, block_out = b.shape
    s = r // k
    xa = keep_tokens_sharded(xa, axis=1)  # under a keras.distribution: a hint to XLA, else xa itself
    block_xa = xa if hybrid_b is None else xa[..., :r]  # a no-op slice still costs a gradient op
    # Cross-block exchange: output block j gathers slice j of every input block p.
    features = ops.reshape(ops.transpose(ops.reshape(block_xa, (k, -1, k, s)), (2, 1, 0, 3)), (k, -1, r))
    columns = b * scale  # [j, r, o]
    if hybrid_b is not None:
        hybrid = ops.sum(xa[..., r:], axis=0)  # [n, h]
        features = ops.concatenate([features, ops.repeat(hybrid[None], k, axis=0)], axis=-1)
        hybrid_columns = ops.reshape(hybrid_b * scale, (hybrid_b.shape[0], k, block_out))
        columns = ops.concatenate([columns, ops.transpose(hybrid_columns, (1, 0, 2))], axis=1)
    y = ops.matmul(features, columns)  # [j, n, o]
    return ops.reshape(ops.transpose(y, (1, 0, 2)), (-1, k * block_out))


def delta_matrix(a, b, scale, hybrid_a=None, hybrid_b=None):
    """`scale * (block update + hybrid_a @ hybrid_b)` as an `[in, out]` matrix.

    One batched matmul over input blocks, `[p, in/k, r(+h)] @ [p, r(+h), out]`,
    where input block `p`'s right factor holds, for each output block `j`,
    its slice of `b[j]` in that block's columns and zeros elsewhere. That is
    `k` times the minimal multiply-adds, yet measured faster on every backend
    than a matmul per grid cell, whose output needs a transpose of the whole
    matrix (`benchmarks/delta.py`, 4096 x 4096 on torch: 74 -> 41 ms).

    Leading axes batch: `a [..., k, in/k, r]`, `b [..., k, r, out/k]` (and
    hybrid `[..., in, h]`, `[..., h, out]`) give `[..., in, out]`, one matrix
    per expert of a mixture-of-experts weight.
    """
    *lead, k, block_in, r = a.shape
    lead, s, block_out = tuple(lead), r // k, b.shape[-1]
    # [..., p, j, s, o]: input block p's slice of every b[j]
    by_input_block = ops.swapaxes(ops.reshape(b * scale, lead + (k, k, s, block_out)), len(lead), len(lead) + 1)
    in_own_block = ops.reshape(ops.eye(k, dtype=b.dtype), (k, 1, k, 1))  # [j, ., column block, .]
    columns = ops.reshape(ops.expand_dims(by_input_block, -2) * in_own_block, lead + (k, r, k * block_out))
    if hybrid_b is not None:
        hybrid = ops.expand_dims(hybrid_b * scale, -3)
        columns = ops.concatenate([columns, ops.broadcast_to(hybrid, lead + (k,) + tuple(hybrid_b.shape[-2:]))], -2)
    delta = ops.matmul(rows_by_input_block(a, hybrid_a), columns)  # [..., p, i, out]
    return ops.reshape(delta, lead + (k * block_in, k * block_out))


def rows_by_input_block(a, hybrid_a):
    """`a`, with the hybrid `A` split by input block appended: `[..., k, in/k, r(+h)]`."""
    if hybrid_a is None:
        return a
    *lead, k, block_in, _ = a.shape
    return ops.concatenate([a, ops.reshape(hybrid_a, tuple(lead) + (k, block_in, hybrid_a.shape[-1]))], axis=-1)


def kaiming_uniform_bound(fan_in):
    """Bound of torch's `kaiming_uniform_(a=sqrt(5))`, PEFT's adapter init."""
    return 1.0 / math.sqrt(fan_in)


def routed_block_forward(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    """Each batch row through its own adapter: `x [rows, n, in] -> [rows, n, out]`.

    The adapters are gathered per row (as vLLM's BGMV kernels do), so the
    multiply-adds are those of `block_forward` whatever the number of
    adapters: `a [rows, k, in/k, r]`, `b [rows, k, r, out/k]`, `scale
    [rows, 1, 1]` (and hybrid `[rows, in, h]`, `[rows, h, out]`). The same
    two products, now over `(row, block)`. Compiled (XLA), explicit
    transposes and matmuls measured fastest; eager, two einsums that hold
    the cross-block exchange in their indices dispatch 5 ops fewer per
    layer, as fast per op (`backend.dispatches_each_op`, `benchmarks/routing.py`).
    """
    rows, (_, k, block_in, r) = ops.shape(x)[0], a.shape
    s, block_out = r // k, b.shape[-1]
    if dispatches_each_op():
        xa = ops.einsum("bnpi,bpir->bnpr", ops.reshape(x, (rows, -1, k, block_in)), a)
        y = ops.einsum(
            "bnpjs,bjpso->bnjo", ops.reshape(xa, (rows, -1, k, k, s)), ops.reshape(b, (rows, k, k, s, block_out))
        )
    else:
        x_blocks = ops.transpose(ops.reshape(x, (rows, -1, k, block_in)), (0, 2, 1, 3))  # [row, p, n, i]
        xa = ops.matmul(x_blocks, a)  # [row, p, n, r]
        # Cross-block exchange, per row: output block j gathers slice j of every input block p.
        features = ops.reshape(ops.transpose(ops.reshape(xa, (rows, k, -1, k, s)), (0, 3, 2, 1, 4)), (rows, k, -1, r))
        y = ops.transpose(ops.matmul(features, b), (0, 2, 1, 3))  # [row, n, j, o]
    y = ops.reshape(y, (rows, -1, k * block_out))
    if hybrid_a is not None:
        y = ops.add(y, ops.matmul(ops.matmul(x, hybrid_a), hybrid_b))
    return ops.multiply(y, scale)

"""Low-rank factors of adapter updates, in numpy: exact, truncated, and their errors.

A GraLoRA update has rank at most `k * r + hybrid_r`, and its `k * k`
blocks of rank `r / k` (plus the hybrid pair) already are a factorization
at that rank: `gralora_factors` assembles it without any decomposition.
Keras' own LoRA factors only a kernel's last axis; `keras_lora_factors`
turns that into a factorization of the `[in, out]` projection (rank `r`
per slice of the other axes on that side, e.g. `heads * r`).

`truncate` gives the best rank-`t` approximation of `a @ b` (Eckart-Young)
from a QR of each factor and an SVD of the small `R x R` core, never of
the `[in, out]` matrix; `relative_error` measures it the same way.
Factors are `a` `[in, R]` and `b` `[R, out]` with the adapter's scale in
`b`, so `a @ b` is the update (PEFT's `lora_A` is `a.T`, `lora_B` is
`b.T`, with `lora_alpha = R`).

Only numpy: the command line (`keras_gralora.cli`) converts PEFT
directories without Keras.
"""

import numpy as np


def gralora_factors(a, b, scale, hybrid_a=None, hybrid_b=None):
    """Exact `(left [in, k*r + h], right [k*r + h, out])` of a GraLoRA update.

    Args:
        a: `(k, in / k, r)`, PEFT's `gralora_A`.
        b: `(k, r, out / k)`, PEFT's `gralora_B`.
        scale: `alpha / (r + hybrid_r)`, folded into `right`.
        hybrid_a, hybrid_b: `(in, h)` and `(h, out)`, or `None`.

    Input block `p` owns columns `p * r ... (p + 1) * r` of `left` (`a[p]`,
    whose `r` columns split as `(output block j, s)`); their rows of `right`
    put slice `p` of `b[j]` into output block `j`'s columns.
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    k, block_in, r = a.shape
    s, block_out = r // k, b.shape[-1]
    blocks = np.arange(k)
    left = np.zeros((k, block_in, k, r), np.float32)
    left[blocks, :, blocks, :] = a  # block diagonal: [p, i, p, r] = a[p]
    right = np.zeros((k, k, s, k, block_out), np.float32)  # [p, j, t, j', o]
    right[:, blocks, :, blocks, :] = b.reshape(k, k, s, block_out)  # [j, p, t, o] = b[j][p*s + t, o]
    left, right = left.reshape(k * block_in, k * r), right.reshape(k * r, k * block_out) * np.float32(scale)
    if hybrid_a is not None:
        left = np.concatenate([left, np.asarray(hybrid_a, np.float32)], axis=1)
        right = np.concatenate([right, np.asarray(hybrid_b, np.float32) * np.float32(scale)], axis=0)
    return left, right


def keras_lora_factors(lora_a, lora_b, scale, kernel_axes, in_axes):
    """Exact `(left [in, R], right [R, out])` of a Keras LoRA update, for kernel axes `kernel_axes` (letters).

    Keras' `lora_kernel_a` has the kernel's shape with its last axis `L`
    replaced by `r`, `lora_kernel_b` is `(r, size of L)`. The kernel axes
    `S` on `L`'s side (input or output) other than `L` index independent
    slices, each with its own `A` and the shared `B`: rank `|S| * r`, a
    block-diagonal factor (`kron(I_S, B)`) on `L`'s side. `in_axes` are the
    contracted kernel axes; matrix axes are flattened in kernel order, as
    GraLoRA reads the kernel. A Dense kernel is `kernel_axes="io", in_axes="i"`.
    """
    lora_a, lora_b = np.asarray(lora_a, np.float32), np.asarray(lora_b, np.float32) * np.float32(scale)
    sizes = dict(zip(kernel_axes, lora_a.shape[:-1] + lora_b.shape[-1:]))
    last, rank = kernel_axes[-1], lora_b.shape[0]
    out_axes = [c for c in kernel_axes if c not in in_axes]
    last_is_out = last in out_axes
    same = [c for c in (out_axes if last_is_out else in_axes) if c != last]  # S
    other = [c for c in kernel_axes[:-1] if c not in same]  # T: the far side, all in `lora_a`
    n_same, n_other = int(np.prod([sizes[c] for c in same])), int(np.prod([sizes[c] for c in other]))
    order = [kernel_axes.index(c) for c in (other + same if last_is_out else same + other)] + [len(kernel_axes) - 1]
    grouped = np.transpose(lora_a, order)  # [T..., S..., r] or [S..., T..., r]
    if last_is_out:  # delta[T, (S, L)] = sum_r A[T, S, r] B[r, L]
        return grouped.reshape(n_other, n_same * rank), np.kron(np.eye(n_same, dtype=np.float32), lora_b)
    by_slice = grouped.reshape(n_same, n_other, rank).transpose(0, 2, 1)  # [S, r, T]
    return np.kron(np.eye(n_same, dtype=np.float32), lora_b.T), by_slice.reshape(n_same * rank, n_other)


def truncate(left, right, rank=None, energy=None):
    """`(left', right', kept singular values, all singular values)`: the best approximation of `left @ right`.

    `rank` keeps that many singular values (padding with zero columns where
    the update has fewer); `energy` in (0, 1] keeps the fewest whose squares
    reach that fraction of the total (PEFT's `convert_to_lora` rule). The
    SVD is of the `R x R` core `ra @ rb.T` of the QRs `left = qa ra`,
    `right.T = qb rb`, in float64.
    """
    qa, ra = np.linalg.qr(np.asarray(left, np.float64))
    qb, rb = np.linalg.qr(np.asarray(right, np.float64).T)
    u, sigma, vt = np.linalg.svd(ra @ rb.T, full_matrices=False)
    if energy is not None:
        rank = energy_rank(sigma, energy)
    kept = min(rank, sigma.size)
    root = np.sqrt(sigma[:kept])
    new_left, new_right = qa @ (u[:, :kept] * root), (root[:, None] * vt[:kept]) @ qb.T
    new_left, new_right = pad(new_left.astype(np.float32), new_right.astype(np.float32), rank)
    return new_left, new_right, sigma[:kept], sigma


def energy_rank(sigma, fraction):
    """The smallest rank whose squared singular values reach `fraction` of their sum (at least 1)."""
    cumulative = np.cumsum(np.square(sigma, dtype=np.float64))
    index = int(np.searchsorted(cumulative, fraction * cumulative[-1], side="left")) if cumulative.size else 0
    return min(index + 1, max(sigma.size, 1))


def pad(left, right, rank):
    """The factors with zero columns of `left` and rows of `right` added up to `rank` (exact)."""
    missing = rank - left.shape[1]
    if missing <= 0:
        return left, right
    return (
        np.concatenate([left, np.zeros((left.shape[0], missing), left.dtype)], axis=1),
        np.concatenate([right, np.zeros((missing, right.shape[1]), right.dtype)], axis=0),
    )


def relative_error(left, right, exact_left, exact_right):
    """`||left @ right - exact_left @ exact_right||_F / ||exact_left @ exact_right||_F` (0 when both are zero).

    Never forms an `[in, out]` matrix: the difference is itself a product of
    factors, `[left, exact_left] @ [right; -exact_right]`, and `frobenius`
    takes its norm from their small QR factor. Memory `O((in + out) * R)`.
    """
    difference = frobenius(
        np.concatenate([left, exact_left], axis=1), np.concatenate([right, -np.asarray(exact_right)], axis=0)
    )
    norm = frobenius(exact_left, exact_right)
    if norm == 0:
        return 0.0 if difference == 0 else float("inf")
    return float(difference / norm)


def frobenius(left, right):
    """`||left @ right||_F` in float64 from `R @ right`, `R` the triangular factor of `left`'s QR."""
    left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
    if left.shape[0] > right.shape[1]:  # take the QR on the shorter side
        left, right = right.T, left.T
    return float(np.linalg.norm(np.linalg.qr(left, mode="r") @ right))

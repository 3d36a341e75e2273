"""GraLoRA in plain NumPy, written from shared/GRALORA.md, independent of the library.

The forward follows the document step by step (reshape, swap, reshape); the
delta is built one grid cell at a time. Both are in float64.
"""

import numpy as np


def forward(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    """Adapter output for x [..., in] (without the base path)."""
    k, block_in, r = a.shape
    s = r // k
    x = np.asarray(x, np.float64)
    lead = x.shape[:-1]
    xa = np.einsum("...ai,air->...ar", x.reshape(*lead, k, block_in), a)
    xa = xa.reshape(*lead, k, k, s).swapaxes(-3, -2).reshape(*lead, k, r)
    y = np.einsum("...jr,jro->...jo", xa, b).reshape(*lead, -1)
    if hybrid_a is not None:
        y = y + x @ hybrid_a @ hybrid_b
    return scale * y


def delta(a, b, scale, hybrid_a=None, hybrid_b=None):
    """The update as an [in, out] matrix, cell by cell."""
    k, block_in, r = a.shape
    s, block_out = r // k, b.shape[-1]
    out = np.zeros((k * block_in, k * block_out))
    for p in range(k):
        for j in range(k):
            cell = a[p][:, j * s : (j + 1) * s] @ b[j][p * s : (p + 1) * s, :]
            out[p * block_in : (p + 1) * block_in, j * block_out : (j + 1) * block_out] = cell
    if hybrid_a is not None:
        out = out + hybrid_a @ hybrid_b
    return scale * out


def adapter_arrays(layer):
    """The layer's adapter weights as float64 NumPy arrays, in PEFT's order."""
    return [np.asarray(v.numpy(), np.float64) for v in layer.adapter_variables]

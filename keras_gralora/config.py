"""GraLoRA settings: one validated record shared by layers, injection and saving."""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class GraLoRAConfig:
    """The hyper-parameters of one GraLoRA adapter.

    Args:
        r: Total rank of the block adapters; each of the `k * k` blocks
            gets rank `r // k`. Trainable parameters: `r * (in + out)`.
        k: Number of blocks along the input and along the output features.
        hybrid_r: Rank of an extra plain LoRA over the whole matrix
            (0 disables it).
        alpha: Scaling numerator; `scale = alpha / (r + hybrid_r)`.
            `None` means `2 * (r + hybrid_r)`, i.e. a scale of 2 (PEFT's
            defaults r=32, alpha=64).
        dropout: Dropout rate on the adapter input, in `[0, 1)`.
        init_weights: `True` (the default) zero-initialises B so that a new
            adapter leaves the layer's output unchanged; `False` draws B at
            random too (for tests).

    Example:

    >>> GraLoRAConfig(r=8, k=2).scale
    2.0
    """

    r: int = 32
    k: int = 2
    hybrid_r: int = 0
    alpha: float | None = None
    dropout: float = 0.0
    init_weights: bool = True

    def validate(self, where):
        """Raises `ValueError` for bad settings; `where` names the layer."""
        if not _is_int(self.r) or self.r <= 0:
            raise ValueError(f"{where}: `r` must be a positive integer, got r={self.r!r}.")
        if not _is_int(self.k) or self.k <= 0:
            raise ValueError(f"{where}: `k` must be a positive integer, got k={self.k!r}.")
        if not _is_int(self.hybrid_r) or self.hybrid_r < 0:
            raise ValueError(
                f"{where}: `hybrid_r` must be a non-negative integer, got hybrid_r={self.hybrid_r!r}."
            )
        if self.r % self.k:
            raise ValueError(
                f"{where}: `r` must be divisible by `k` (each of the k*k blocks gets rank r/k), "
                f"got r={self.r}, k={self.k}. Use r={_round_up(self.r, self.k)} or a k that divides {self.r}."
            )
        if self.alpha is not None and (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not math.isfinite(self.alpha)
            or self.alpha <= 0
        ):
            raise ValueError(
                f"{where}: `alpha` must be a finite positive number or None "
                f"(None means 2 * (r + hybrid_r)), got alpha={self.alpha!r}."
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"{where}: `dropout` must be a number in [0, 1), got dropout={self.dropout!r}.")
        return self

    def validate_features(self, in_features, out_features, where):
        """Raises `ValueError` when the layer's features do not split into k blocks."""
        for name, size in (("input", in_features), ("output", out_features)):
            if size % self.k:
                raise ValueError(
                    f"{where}: its {name} features ({size}) are not divisible by k={self.k}; GraLoRA "
                    f"splits them into k equal blocks. Choose a k that divides {size}, or leave this layer out."
                )

    @property
    def effective_alpha(self):
        return 2.0 * (self.r + self.hybrid_r) if self.alpha is None else float(self.alpha)

    @property
    def scale(self):
        return self.effective_alpha / (self.r + self.hybrid_r)

    def to_dict(self):
        return dataclasses.asdict(self)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _round_up(value, multiple):
    return -(-value // multiple) * multiple

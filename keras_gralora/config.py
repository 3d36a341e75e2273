"""GraLoRA settings: one validated record shared by layers, injection and saving."""

import dataclasses
import math
import re

BIAS_MODES = ("none", "all", "gralora_only")
DEFAULT_ADAPTER = "default"
BASE_ROW = "__base__"  # PEFT's `adapter_names` entry for "no adapter": routing's, never an adapter's name
_ADAPTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


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
        bias: Which biases train with this adapter, as PEFT's `bias`:
            `"none"`, `"all"` (every bias of the model) or `"gralora_only"`
            (the adapted layers' biases). Trained biases travel in the
            adapter file.
        modules_to_save: Paths of the layers that train with this adapter
            and travel in its file (e.g. a task's new head), as resolved by
            `enable_gralora` from names or a regular expression.

    Raises:
        ValueError: From `validate()`, which every layer and
            `enable_gralora` call before use: a rank that is not a positive
            multiple of `k`, a negative `hybrid_r`, a dropout outside
            `[0, 1)` or an unknown bias mode, each named with its value.

    Examples:
        >>> from keras_gralora import GraLoRAConfig
        >>> config = GraLoRAConfig(r=8, k=2)
        >>> config.scale, config.effective_alpha
        (2.0, 16.0)
        >>> GraLoRAConfig(r=6, k=4).validate("my_layer")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: my_layer: `r` must be divisible by `k` (...), got r=6, k=4. Use r=8 or a k that divides 6.
    """

    r: int = 32
    k: int = 2
    hybrid_r: int = 0
    alpha: float | None = None
    dropout: float = 0.0
    init_weights: bool = True
    bias: str = "none"
    modules_to_save: tuple = ()

    def __post_init__(self):  # JSON gives lists back; keep the record hashable
        if isinstance(self.modules_to_save, list):
            object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save))

    def validate(self, where):
        """Raises `ValueError` for bad settings; `where` names the layer."""
        if not _is_int(self.r) or self.r <= 0:
            raise ValueError(f"{where}: `r` must be a positive integer, got r={self.r!r}.")
        if not _is_int(self.k) or self.k <= 0:
            raise ValueError(f"{where}: `k` must be a positive integer, got k={self.k!r}.")
        if not _is_int(self.hybrid_r) or self.hybrid_r < 0:
            raise ValueError(f"{where}: `hybrid_r` must be a non-negative integer, got hybrid_r={self.hybrid_r!r}.")
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
        if self.bias not in BIAS_MODES:
            raise ValueError(f"{where}: `bias` must be one of {BIAS_MODES}, got bias={self.bias!r}.")
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
    def effective_alpha(self) -> float:
        """`alpha`, or its default `2 * (r + hybrid_r)` when `alpha` is None."""
        return 2.0 * (self.r + self.hybrid_r) if self.alpha is None else float(self.alpha)

    @property
    def scale(self) -> float:
        """The factor on the adapter's output: `effective_alpha / (r + hybrid_r)`."""
        return self.effective_alpha / (self.r + self.hybrid_r)

    def to_dict(self) -> dict:
        """The settings as JSON-ready values (`GraLoRAConfig(**config.to_dict())` gives them back)."""
        return {**dataclasses.asdict(self), "modules_to_save": list(self.modules_to_save)}

    def layer_kwargs(self):
        """The settings a GraLoRA layer's constructor takes (not the model-level ones)."""
        return {name: getattr(self, name) for name in ("r", "k", "hybrid_r", "alpha", "dropout", "init_weights")}


def check_adapter_name(name, where):
    """Raises `ValueError` unless `name` can name an adapter (and its variables)."""
    if not isinstance(name, str) or not _ADAPTER_NAME.fullmatch(name):
        raise ValueError(
            f"{where}: adapter_name={name!r} is not a valid adapter name. Use letters, digits, '_' and '-' "
            "(it becomes part of variable names, where torch forbids '.'), e.g. 'default' or 'task-2'."
        )
    if name == BASE_ROW:
        raise ValueError(
            f"{where}: adapter_name={name!r} is reserved: `adapter_routing` reads it as 'the base model, no "
            "adapter' (PEFT's adapter_names), so an adapter of that name could never be routed to. Pick another name."
        )
    return name


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _round_up(value, multiple):
    return -(-value // multiple) * multiple

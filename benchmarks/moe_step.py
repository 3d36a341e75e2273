"""Train-step time of a KerasHub Qwen3-MoE backbone with its expert weights adapted, on KERAS_BACKEND.

Three configurations in one process, interleaved after warm-up
(`stack.interleaved_medians`), `--repeat` blocks of `--steps` rounds:

- `experts, delta formed` (the library): the host's `call` multiplies by
  `W + delta`, one `[E, in, out]` delta per weight and step,
  `E * in * out * r / k` multiply-adds;
- `experts, factored`: the same adapters (same weights, same values)
  applied to the activations instead, `x @ W + (x @ A) @ B` per expert,
  `E * tokens * r * (in + out)` multiply-adds: a subclass of KerasHub's
  experts here, since the experts' own code only reads its weights;
- `attention only`: GraLoRA on the default targets (query, value), the
  reference point a MoE user starts from (other weights train).

KerasHub's experts multiply every token by every expert, so the formed
delta costs `r / (k * tokens)` of the experts' own matmul: the factored
order wins only below `in * out / (k * (in + out))` tokens (a few, i.e.
generation), which `--seq 1` measures.

    KERAS_BACKEND=jax python benchmarks/moe_step.py --batch 4 --seq 64 --steps 5 --repeat 3
"""

import argparse
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np
from keras import ops
from keras_hub.src.models.qwen3_moe.qwen3_moe_decoder import Qwen3MoeExperts  # the experts KerasHub writes
from stack import interleaved_medians, train_on_batch_step

GATE, OUTPUT = "_expert_feedforward_gate_dense", "_expert_feedforward_output_dense"


def factored(x, holder, per_expert):
    """The adapters of `holder` applied to `x` (`[t, in]`, or `[E, t, in]` when `per_expert`): `[E, t, out]`."""
    total = None
    for adapter in holder._gralora.forward:
        a, b, scale = adapter.factors()[:3]
        experts, k, block_in, r = a.shape
        blocks = ops.reshape(x, tuple(ops.shape(x)[:-1]) + (k, block_in))
        xa = ops.einsum("etpi,epir->eptr" if per_expert else "tpi,epir->eptr", blocks, a)
        features = ops.reshape(
            ops.transpose(ops.reshape(xa, (experts, k, -1, k, r // k)), (0, 3, 2, 1, 4)), (experts, k, -1, r)
        )
        y = ops.einsum("ejtr,ejro->etjo", features, b * scale)
        y = ops.reshape(y, (experts, -1, k * b.shape[-1]))
        total = y if total is None else total + y
    return total


class FactoredExperts(Qwen3MoeExperts):
    """KerasHub's Qwen3-MoE experts with the adapters applied to the activations (`Qwen3MoeExperts.call`'s math)."""

    def call(self, hidden_states):
        gate_weight, output_weight = vars(self)[GATE], vars(self)[OUTPUT]
        gate_up = ops.einsum("th,ehm->etm", hidden_states, gate_weight)
        gate_up = gate_up + ops.cast(
            factored(hidden_states, self.gralora_expert_feedforward_gate_dense, False), gate_up.dtype
        )
        gate, up = ops.split(gate_up, 2, axis=-1)
        hidden = up * self.activation(gate)
        out = ops.einsum("eti,eih->eth", hidden, output_weight)
        return out + ops.cast(factored(hidden, self.gralora_expert_feedforward_output_dense, True), out.dtype)


def backbone(args, kind, weights=None):
    """A backbone with `weights` (the base every configuration shares), adapted as `kind` says."""
    model = keras_hub.models.Qwen3MoeBackbone(
        vocabulary_size=1000,
        num_layers=args.layers,
        num_query_heads=4,
        num_key_value_heads=2,
        head_dim=args.hidden // 4,
        hidden_dim=args.hidden,
        intermediate_dim=2 * args.hidden,
        moe_intermediate_dim=args.inner,
        num_experts=args.experts,
        top_k=2,
        norm_top_k_prob=True,
        decoder_sparse_step=1,
    )
    if weights is not None:
        model.set_weights(weights)
    if kind == "attention":
        model.enable_gralora(r=args.r, k=args.k)
    elif kind is not None:
        model.enable_gralora(r=args.r, k=args.k, target_layer_names=[], target_parameters="all")
    for i, variable in enumerate(model.trainable_variables):  # as if trained (B != 0); equal in both expert configs
        variable.assign(keras.random.normal(variable.shape, stddev=0.02, seed=i))
    if kind == "factored":
        for layer in model._flatten_layers():
            if type(layer).__name__ == "GraLoRAQwen3MoeExperts":
                layer.__class__ = FactoredExperts
    return model


def main():
    parser = argparse.ArgumentParser()
    sizes = {"hidden": 256, "inner": 256, "experts": 8, "layers": 2, "batch": 4, "seq": 64, "r": 32, "k": 2}
    for name, default in {**sizes, "steps": 5, "repeat": 3}.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, 1000, (args.batch, args.seq)).astype("int32"),
        "padding_mask": np.ones((args.batch, args.seq), "int32"),
    }
    y = rng.standard_normal((args.batch, args.seq, args.hidden)).astype("float32")
    configs = {"experts, delta formed": "experts", "experts, factored": "factored", "attention only": "attention"}
    weights = backbone(args, None).get_weights()
    models = {name: backbone(args, kind, weights) for name, kind in configs.items()}
    formed, by_activations = models["experts, delta formed"](x), models["experts, factored"](x)
    np.testing.assert_allclose(ops.convert_to_numpy(formed), ops.convert_to_numpy(by_activations), rtol=1e-3, atol=1e-4)
    steps = {name: train_on_batch_step(model, x, y) for name, model in models.items()}
    blocks = [interleaved_medians(steps, args.steps) for _ in range(args.repeat)]
    for name in configs:
        milliseconds = [1000 * block[name] for block in blocks]
        ratios = [block[name] / block["experts, delta formed"] for block in blocks]
        print(
            json.dumps(
                {
                    "bench": "moe_step",
                    "backend": keras.backend.backend(),
                    "tokens": args.batch * args.seq,
                    "config": name,
                    "ms": float(np.median(milliseconds)),
                    "ms_range": [min(milliseconds), max(milliseconds)],
                    "vs_delta_formed": float(np.median(ratios)),
                    "vs_delta_formed_range": [min(ratios), max(ratios)],
                }
            )
        )


if __name__ == "__main__":
    main()

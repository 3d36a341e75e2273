"""Serving many adapters from one base: a routed batch, a hot-swapped tenant, a routed `generate`.

1. Routing: the two MiniLM adapters of `two_tasks.py` ("sentiment", the main
   job's task, and "strength") and the base serve one mixed batch: each row
   goes through its own adapter in one backbone pass
   (`keras_gralora.adapter_routing`), then through its task's head. Each
   row's logits are checked against its task run alone.
2. Hot-swap: a fresh backbone serves one "tenant" adapter slot; each task's
   adapter is swapped into it from the adapter file (`hotswap_adapter`) and
   served by the same compiled `predict`, checked against loading the file.
3. Generate: a tiny random Gemma (KerasHub) generates four prompts with
   three adapters and the base in one batch; each row equals its adapter
   alone, and a new routing reuses the compiled `generate`.

    KERAS_BACKEND=jax python examples/serving.py --examples 1024
"""

import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np
import two_tasks

import keras_gralora

BASE = "__base__"


def main(argv=None):
    trained = two_tasks.main(argv)
    result = serve(trained)
    result.update(generate_mixed())
    return result


def serve(trained, rows=48):
    """Steps 1 and 2 on what `two_tasks.main` trained."""
    backbone, tasks, preprocessor = trained.backbone, trained.tasks, trained.preprocessor
    texts = list(trained.test_x[:rows])
    names = [("sentiment", "strength", BASE)[i % 3] for i in range(len(texts))]
    features = {key: keras.ops.convert_to_numpy(value) for key, value in preprocessor(texts).items()}
    start = time.perf_counter()
    with keras_gralora.adapter_routing(backbone, names):
        pooled = backbone.predict(features, batch_size=16, verbose=0)["pooled_output"]
    routed_time = time.perf_counter() - start
    difference = 0.0
    for name, task in tasks.items():
        for adapter in (name, BASE):  # a task's head on its adapter's rows, and on the base rows
            rows_of = np.array([i for i, n in enumerate(names) if n == adapter])
            logits = keras.ops.convert_to_numpy(task.output_dense(pooled[rows_of]))
            alone = _alone(backbone, task, adapter, [texts[i] for i in rows_of])
            difference = max(difference, np.abs(logits - alone).max())
    print(
        f"one routed batch of {len(texts)} rows over adapters {sorted(set(names))}: {routed_time:.2f} s; "
        f"each row's logits vs its task run alone: max difference {difference:.2e}"
    )
    result = {"routed_vs_alone_max_logit_diff": float(difference)}
    result.update(_hotswap_tenants(trained, features))
    return result


def _alone(backbone, task, adapter, texts):
    """The task's logits for `texts` with only `adapter` active (none: the base)."""
    if adapter == BASE:
        with keras_gralora.disable_gralora(backbone):
            return task.predict(texts, verbose=0)
    keras_gralora.set_active_adapters(backbone, adapter)
    return task.predict(texts, verbose=0)


def _hotswap_tenants(trained, features):
    served = keras_hub.models.BertBackbone.from_preset(trained.preset)
    served.enable_gralora(r=trained.r, k=trained.k, target_layer_names="all", adapter_name="tenant")
    want = {}
    for name in two_tasks.TASKS:  # first: any adapter change elsewhere would rebuild every compiled function
        keras_gralora.set_active_adapters(trained.backbone, name)
        want[name] = trained.backbone.predict(features, verbose=0)["pooled_output"]
    served.predict(features, verbose=0)
    function, difference, times = served.predict_function, 0.0, []
    for name in two_tasks.TASKS:
        start = time.perf_counter()
        keras_gralora.hotswap_adapter(served, trained.path, "tenant", source_adapter_name=name)
        times.append(time.perf_counter() - start)
        got = served.predict(features, verbose=0)["pooled_output"]
        difference = max(difference, np.abs(got - want[name]).max())
    rebuilt = served.predict_function is not function
    print(
        f"hot-swapped {list(two_tasks.TASKS)} into one slot in {', '.join(f'{t:.2f}' for t in times)} s; "
        f"features vs the trained backbone: max difference {difference:.2e}; predict recompiled: {rebuilt}"
    )
    return {"hotswapped_vs_loaded_max_feature_diff": float(difference), "predict_rebuilt": rebuilt}


def generate_mixed():
    """Step 3: a tiny random Gemma, three adapters and the base in one `generate`."""
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=48,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=4,
    )
    lm = keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)
    lm.compile(sampler="greedy")
    names = ["math", "code", BASE, "chat"]
    for i, name in enumerate(["math", "code", "chat"]):
        backbone.enable_gralora(r=4, k=2, adapter_name=name, target_layer_names="all")
        rng = np.random.default_rng(i)
        for variable in backbone.weights:
            if variable.path.endswith(f"_{name}"):
                variable.assign(rng.standard_normal(variable.shape).astype("float32"))
    prompt = {
        "token_ids": np.array([[5, 9, 3, 0, 0, 0, 0, 0]] * 4, "int32"),
        "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]] * 4, bool),
    }

    def generate():
        return np.asarray(lm.generate(prompt, stop_token_ids=None)["token_ids"])

    alone = {}
    for name in set(names) - {BASE}:
        keras_gralora.set_active_adapters(backbone, name)
        alone[name] = generate()[0]
    with keras_gralora.disable_gralora(backbone):
        alone[BASE] = generate()[0]
    with keras_gralora.adapter_routing(backbone, names) as routing:
        mixed = generate()
        routing.route(names[::-1])
        reversed_rows = generate()
    equal = all((mixed[i] == alone[n]).all() and (reversed_rows[3 - i] == alone[n]).all() for i, n in enumerate(names))
    for name, row in zip(names, mixed):
        print(f"  {name:>8}: {row.tolist()}")
    print(f"routed generate: every row equals its adapter alone: {equal}")
    return {"rows_equal_alone": bool(equal)}


if __name__ == "__main__":
    main()

"""The README's examples end to end on real MiniLM, tiny: `finetune.py`, `two_tasks.py` and `peft_interop.py`.

It loads the pretrained backbone and the lexicon from their packages
(`scripts/env.sh` installs them), trains one step, and runs every check the
example makes itself: adapter file reload and merge give the trained accuracy.
"""

import os
import warnings

import keras
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)


@pytest.mark.slow
def test_finetune_example_end_to_end(examples_on_path, tmp_path):
    import finetune

    argv = ["--examples", "16", "--test-examples", "16", "--epochs", "1", "--steps", "1", "--out", str(tmp_path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # what a user sees by default (e.g. Keras' ignored shuffle=True)
        result = finetune.main(argv)
    shown = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, UserWarning)]
    assert not shown, f"the main job printed warnings: {shown}"
    assert 0.0 <= result["before"] <= 1.0
    assert result["reloaded"] == result["after"]
    files = ["minilm-sentiment-merged.keras", "minilm-sentiment.gralora.weights.h5"]
    assert sorted(os.listdir(tmp_path)) == files

    # (--quantize runs the same steps on a quantized base: tests/test_quantized.py covers them, cheaper.)

    import two_tasks  # the README's second example, in the same slow test

    trained = two_tasks.main(
        ["--examples", "16", "--test-examples", "16", "--epochs", "1", "--steps", "1", "--out", str(tmp_path)]
    )
    assert set(trained.accuracy) == {(task, adapter) for task in two_tasks.TASKS for adapter in two_tasks.TASKS}

    import serving  # the README's serving example, on the two adapters just trained

    result = serving.serve(trained, rows=12)
    assert result["routed_vs_alone_max_logit_diff"] < 1e-4
    assert result["hotswapped_vs_loaded_max_feature_diff"] < 1e-4 and not result["predict_rebuilt"]
    assert serving.generate_mixed()["rows_equal_alone"]

    import peft_interop  # the README's PEFT example: torch trains, this backend serves, PEFT reloads ours

    argv = ["--examples", "32", "--test-examples", "16", "--steps", "1", "--out", str(tmp_path)]
    result = peft_interop.main(argv, in_process=tuple(peft_interop.STAGES))  # no Python start: ~10 s each
    assert result["backend"] == keras.backend.backend()
    assert result["keras_vs_peft_max_logit_diff"] < 1e-3  # KerasHub's BERT GELU is the tanh one
    assert result["keras_adapter_vs_keras_max_logit_diff"] < 1e-3
    assert result["tanh_gelu_keras_adapter_vs_keras_max_logit_diff"] < 1e-5
    assert result["tanh_gelu_peft_adapter_vs_keras_max_logit_diff"] < 1e-5


@pytest.mark.skipif(
    not os.environ.get("GRALORA_REAL_GEMMA"),
    reason="the real Gemma 3 270M job (minutes, needs its packages): GRALORA_REAL_GEMMA=1 runs it",
)
@pytest.mark.parametrize("quantize", [[], ["--quantize", "int8"]])
def test_the_real_gemma_job_serves_its_adapter_in_llama_cpp(examples_on_path, tmp_path, quantize):
    """causal_lm.py on the real model, small: reload exact, merge to rounding, llama.cpp scores beside Keras."""
    import causal_lm

    result = causal_lm.main(["--train", "256", "--test", "64", "--out", str(tmp_path), *quantize])
    assert result["reload_max_diff"] < 1e-5 and result["lora_max_error"] < 1e-5
    assert quantize or result["merge_max_diff"] < 1e-3
    assert abs(result["gap"]) <= 0.1  # llama.cpp serves a Q4_K_M base: a few answers may differ
    assert os.path.exists(tmp_path / "sentiment-lora" / "adapter.gguf")


def test_compare_runs_full_fine_tuning_as_the_ceiling_and_resumes(examples_on_path, tmp_path):
    import compare

    argv = ["--ranks", "8", "--methods", "LoRA", "--seeds", "0", "1", "--examples", "16", "--test-examples", "16"]
    argv += ["--full", "--full-lrs", "1e-4", "3e-4", "--out", str(tmp_path)]
    rows = compare.main(argv)
    full = [row for row in rows if row["method"] == compare.FULL]
    assert [(row["seed"], row["learning_rate"]) for row in full][:2] == [(0, 1e-4), (0, 3e-4)]
    best = compare.best_full_lr(rows, 0)
    assert [(row["seed"], row["learning_rate"]) for row in full][2:] == [(1, best)]
    lora = [row for row in rows if row["method"] == "LoRA"]
    assert all(row["trainable"] < full[0]["trainable"] for row in lora)
    assert full[0]["trainable"] > 20_000_000  # every backbone weight of MiniLM (22.7 M), the head frozen
    assert sorted(os.listdir(tmp_path)) == ["compare.csv", "compare.png"]

    again = compare.main(argv + ["--resume"])  # nothing left to run: the same rows, read back
    assert [(row["method"], row["seed"], row["accuracy"]) for row in again] == [
        (row["method"], row["seed"], row["accuracy"]) for row in rows
    ]

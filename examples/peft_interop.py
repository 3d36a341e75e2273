"""Train in PyTorch with PEFT, serve in Keras, and back: MiniLM sentiment, GraLoRA.

Three stages, each in its own process (Keras fixes its backend at import):

1. `train` (torch, transformers, PEFT): the MiniLM checkpoint as a
   `BertForSequenceClassification`, PEFT GraLoRA on query / value (its new
   `classifier` head trains and saves with it), trained on the lexicon;
   `save_pretrained` writes the adapter directory.
2. `serve` (`KERAS_BACKEND`, default jax): KerasHub's `BertTextClassifier`
   from the same checkpoint, `keras_gralora.load_peft_adapter`; its logits on
   PEFT's held-out token ids equal PEFT's, and its accuracy through its own
   preprocessor is reported. `keras_gralora.save_peft_adapter` writes it back.
3. `check` (torch): `PeftModel.from_pretrained` on the written directory
   gives Keras' logits, up to the GELU: KerasHub's BERT uses the tanh
   approximation, MiniLM's transformers config the exact one; with
   transformers set to the tanh GELU both directories give Keras' logits
   to float32 rounding.

    python examples/peft_interop.py                   # all three stages
    KERAS_BACKEND=torch python examples/peft_interop.py --examples 256
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from sentiment_task import CLASSES, load_lexicon, minilm_preset

SEQUENCE_LENGTH = 16


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", nargs="?", choices=["all", "train", "serve", "check"], default="all")
    parser.add_argument("--examples", type=int, default=2048, help="training examples")
    parser.add_argument("--test-examples", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200, help="PEFT training steps (batch 32)")
    parser.add_argument("--out", default="runs/peft_interop", help="folder for the directories and logits")
    return parser.parse_args(argv)


def tokenized(texts):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_preset())
    batch = tokenizer(
        list(texts), padding="max_length", truncation=True, max_length=SEQUENCE_LENGTH, return_tensors="np"
    )
    return {
        "token_ids": batch["input_ids"],
        "segment_ids": batch["token_type_ids"],
        "padding_mask": batch["attention_mask"],
    }


def torch_logits(model, inputs):
    import torch

    with torch.no_grad():
        return model(
            input_ids=torch.tensor(inputs["token_ids"]),
            token_type_ids=torch.tensor(inputs["segment_ids"]),
            attention_mask=torch.tensor(inputs["padding_mask"]),
        ).logits.numpy()


def train(args):
    import peft
    import torch
    from transformers import BertForSequenceClassification

    (texts, labels), (test_texts, test_labels) = load_lexicon(args.examples, args.test_examples)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(minilm_preset(), num_labels=len(CLASSES))
    config = peft.GraloraConfig(r=8, gralora_k=2, alpha=16, target_modules=["query", "value"], task_type="SEQ_CLS")
    model = peft.get_peft_model(model, config)
    inputs, optimizer = tokenized(texts), torch.optim.AdamW(model.parameters(), lr=2e-3)
    order = np.random.default_rng(0).permutation(np.arange(args.steps * 32) % len(texts))
    model.train()
    for step in range(args.steps):
        batch = order[step * 32 : (step + 1) * 32]
        out = model(
            input_ids=torch.tensor(inputs["token_ids"][batch]),
            token_type_ids=torch.tensor(inputs["segment_ids"][batch]),
            attention_mask=torch.tensor(inputs["padding_mask"][batch]),
            labels=torch.tensor(labels[batch]).long(),
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    model.save_pretrained(os.path.join(args.out, "peft-adapter"))
    test_inputs = tokenized(test_texts)
    logits = torch_logits(model.eval(), test_inputs)
    np.savez(os.path.join(args.out, "peft.npz"), labels=test_labels, logits=logits, **test_inputs)
    return {"peft_accuracy": float(np.mean(logits.argmax(-1) == test_labels))}


def serve(args):
    import keras
    from sentiment_task import classifier

    import keras_gralora

    saved = dict(np.load(os.path.join(args.out, "peft.npz")))
    model = classifier(minilm_preset(), seed=0, sequence_length=SEQUENCE_LENGTH)
    keras_gralora.load_peft_adapter(model, os.path.join(args.out, "peft-adapter"))
    inputs = {key: saved[key] for key in ("token_ids", "segment_ids", "padding_mask")}
    logits = keras.ops.convert_to_numpy(model(inputs))
    _, (test_texts, test_labels) = load_lexicon(args.examples, args.test_examples)
    predicted = model.predict(test_texts, batch_size=64, verbose=0).argmax(-1)  # KerasHub's own preprocessing
    keras_gralora.save_peft_adapter(
        model, os.path.join(args.out, "keras-adapter"), base_model_name_or_path=minilm_preset()
    )
    np.save(os.path.join(args.out, "keras_logits.npy"), logits)
    return {
        "backend": keras.backend.backend(),
        "keras_accuracy": float(np.mean(predicted == test_labels)),
        "keras_vs_peft_max_logit_diff": float(np.abs(logits - saved["logits"]).max()),
    }


def check(args):
    """PEFT reloads Keras' directory; with transformers on KerasHub's tanh GELU, both directories give Keras' logits."""
    import peft
    from transformers import BertForSequenceClassification

    saved = dict(np.load(os.path.join(args.out, "peft.npz")))
    keras_logits = np.load(os.path.join(args.out, "keras_logits.npy"))
    result = {}
    for gelu, settings in (("", {}), ("tanh_gelu_", {"hidden_act": "gelu_pytorch_tanh"})):
        for directory in ("keras-adapter", "peft-adapter"):
            base = BertForSequenceClassification.from_pretrained(minilm_preset(), num_labels=len(CLASSES), **settings)
            model = peft.PeftModel.from_pretrained(base, os.path.join(args.out, directory)).eval()
            diff = float(np.abs(torch_logits(model, saved) - keras_logits).max())
            result[f"{gelu}{directory.replace('-', '_')}_vs_keras_max_logit_diff"] = diff
    return result


STAGES = {"train": train, "serve": serve, "check": check}


def main(argv=None, in_process=()):
    """Runs the stages, each in a fresh Python; those named in `in_process` (the tests: all) in this one."""
    args = parse(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.stage != "all":
        result = STAGES[args.stage](args)
        print(json.dumps(result))
        return result
    result = {}
    for stage in ("train", "serve", "check"):  # each in a fresh process: Keras' backend, torch's threads
        if stage in in_process:
            result.update(STAGES[stage](args))
            continue
        argv_ = [
            sys.executable,
            os.path.abspath(__file__),
            stage,
            "--examples",
            str(args.examples),
            "--test-examples",
            str(args.test_examples),
            "--steps",
            str(args.steps),
            "--out",
            args.out,
        ]
        env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
        lines = subprocess.run(argv_, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()
        result.update(json.loads(lines[-1]))
        print(f"{stage}: {lines[-1]}", flush=True)
    return result


if __name__ == "__main__":
    main()

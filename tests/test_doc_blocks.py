"""The python blocks of the README and the docs run as written, page by page, as a reader pastes them.

Each page's blocks run in order in one fresh process (a temporary working
directory, the backend of this test run), so a later block may use what an
earlier one defined, and nothing else. Every page with python blocks is in
`RUNNABLE` (with the backends its blocks run on) or in `NOT_RUNNABLE` with the
reason. The blocks also fit the docs site's code width, so nothing scrolls
sideways.
"""

import glob
import os
import re
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY = ("jax", "torch", "tensorflow")
RUNNABLE = {  # page -> the backends its blocks run on
    "README.md": EVERY,
    "docs/index.md": EVERY,
    "docs/getting-started.md": EVERY,
    "docs/guides/layers.md": EVERY,
    "docs/guides/layer-kinds.md": EVERY,
    "docs/guides/named-adapters.md": EVERY,
    "docs/guides/peft.md": EVERY,
    "docs/guides/quantized.md": EVERY,
    "docs/guides/routing.md": EVERY,
    "docs/guides/saving.md": EVERY,
    "docs/guides/serving.md": EVERY,
    "docs/guides/sharding.md": ("jax",),  # keras.distribution runs on jax
}
NOT_RUNNABLE = {  # page -> why its blocks do not run as a page
    "docs/keras-int8-reverse-embedding-gradient.md": "a report for Keras: its blocks show Keras' own code, patched"
}
WIDTH = 88  # columns of a code block on the docs site, at its widest layout


def blocks(page):
    with open(os.path.join(ROOT, page)) as file:
        return re.findall(r"^```python\n(.*?)^```", file.read(), re.S | re.M)


def test_every_page_with_python_blocks_runs_or_says_why_not():
    pages = ["README.md", *glob.glob("docs/**/*.md", root_dir=ROOT, recursive=True)]
    with_blocks = {page for page in pages if blocks(page)}
    assert with_blocks == set(RUNNABLE) | set(NOT_RUNNABLE)
    assert not set(RUNNABLE) & set(NOT_RUNNABLE)


@pytest.mark.parametrize("page", sorted(RUNNABLE))
def test_the_blocks_fit_the_sites_width(page):
    long = [line for block in blocks(page) for line in block.splitlines() if len(line) > WIDTH]
    assert not long, f"{page}: lines over {WIDTH} columns: {long}"


@pytest.mark.parametrize("page", sorted(RUNNABLE))
def test_the_pages_python_blocks_run_as_written(page, tmp_path):
    if keras.backend.backend() not in RUNNABLE[page]:
        pytest.skip(f"{page} runs on {RUNNABLE[page]}")
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(blocks(page)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=600, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-3000:]

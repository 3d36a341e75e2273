"""The python blocks of the README and the docs run as written, page by page, as a reader pastes them.

Each page's blocks run in order in one fresh process (a temporary working
directory, the backend of this test run), so a later block may use what an
earlier one defined, and nothing else. Pages whose blocks are not runnable
yet are listed in `NOT_YET` with the reason; a page with python blocks must be
in one list or the other.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNABLE = ["README.md", "docs/index.md"]
NOT_YET = {  # page -> why its blocks do not run yet
    **dict.fromkeys(
        [
            "docs/getting-started.md",
            "docs/guides/layers.md",
            "docs/guides/named-adapters.md",
            "docs/guides/peft.md",
            "docs/guides/quantized.md",
            "docs/guides/routing.md",
            "docs/guides/saving.md",
            "docs/guides/serving.md",
            "docs/guides/sharding.md",
        ],
        "its blocks use a model defined elsewhere or from_preset(...) placeholders",
    ),
    "docs/keras-int8-reverse-embedding-gradient.md": "a report for Keras: its blocks show Keras' own code",
}


def blocks(page):
    with open(os.path.join(ROOT, page)) as file:
        return re.findall(r"^```python\n(.*?)^```", file.read(), re.S | re.M)


def test_every_page_with_python_blocks_runs_or_says_why_not():
    pages = ["README.md", *glob.glob("docs/**/*.md", root_dir=ROOT, recursive=True)]
    with_blocks = {page for page in pages if blocks(page)}
    assert with_blocks == set(RUNNABLE) | set(NOT_YET)
    assert not set(RUNNABLE) & set(NOT_YET)


@pytest.mark.parametrize("page", RUNNABLE)
def test_the_pages_python_blocks_run_as_written(page, tmp_path):
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(blocks(page)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=600, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-3000:]

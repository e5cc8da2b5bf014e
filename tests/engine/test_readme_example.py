"""The README's example of tg.function runs as written and prints what its comment says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).parent.parent.parent / "README.md").read_text()


def test_the_readme_example_of_tg_function_runs() -> None:
    section = README.split("## The engine and `tg.function`", 1)[1]
    example = re.search(r"^```py\n(.*?)^```", section, re.M | re.S)
    assert example is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example[1], "README.md", "exec"), {})
    assert out.getvalue().startswith("W=3.000 b=2.000 loss=")

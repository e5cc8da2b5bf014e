"""The manual's example of tg.function (docs/engine.md) runs as written and prints what its
comment says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ENGINE_PAGE = (Path(__file__).parent.parent.parent / "docs" / "engine.md").read_text()


def test_the_manuals_example_of_tg_function_runs() -> None:
    example = re.search(r"^```py\n(.*?)^```", ENGINE_PAGE, re.M | re.S)
    assert example is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example[1], "docs/engine.md", "exec"), {})
    assert out.getvalue().startswith("W=3.000 b=2.000 loss=")

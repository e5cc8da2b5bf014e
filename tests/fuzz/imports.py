"""Coverage-guided fuzzing of the model-file import with atheris (libFuzzer for Python).

    .venv/bin/python tests/fuzz/imports.py -max_total_time=60 [corpus-dir]

Inputs go through :func:`tests.fuzz.model_files.one_import`; an exception other than a
refusal is a crash, which libFuzzer saves as ``crash-<hash>`` and reports by exiting
non-zero; each becomes a test in ``tests/api/test_import_bounds.py``. An empty corpus
directory is seeded with honest exports and the hostile files first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["service.export", "service.api.model_imports"]):
    from tests.fuzz.model_files import one_import, seeds


def main() -> None:
    """Run libFuzzer with the command line's options."""
    for corpus in (Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")):
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for name, data in seeds().items():
                (corpus / name).write_bytes(data)
    atheris.Setup(sys.argv, one_import)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

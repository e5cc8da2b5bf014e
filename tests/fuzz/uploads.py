"""Coverage-guided fuzzing of the upload parsers with atheris (libFuzzer for Python).

    .venv/bin/python tests/fuzz/uploads.py -max_total_time=60 [corpus-dir]

Inputs go through :func:`tests.fuzz.seeds.one_upload`; an exception other than the parsers'
own refusal is a crash, which libFuzzer saves as ``crash-<hash>`` and reports by exiting
non-zero; each becomes a test in ``tests/api/test_upload_fuzz_findings.py``. An empty corpus
directory is seeded with honest files first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["service.files", "zipfile"]):
    from tests.fuzz.seeds import one_upload, seeds


def main() -> None:
    """Run libFuzzer with the command line's options."""
    for corpus in (Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")):
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for name, data in seeds().items():
                (corpus / name).write_bytes(data)
    atheris.Setup(sys.argv, one_upload)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

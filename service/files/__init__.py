"""Parsers of untrusted input: dataset uploads (CSV, ``.npy``, ``.npz``), class labels, and the
CSV or ``.npy`` bodies of batch predictions, each judged against the limits before its data is
read. Nothing here knows HTTP: a refusal is a :class:`~service.files.errors.Refused`, which the
API answers as a problem (``service/api/http/problems.py``)."""

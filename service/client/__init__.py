"""The terminal client: ``tapeline train | watch | export | predict`` against a Tapeline server
over HTTP (``--url`` / ``TAPELINE_URL``, ``--key`` / ``TAPELINE_API_KEY``)."""

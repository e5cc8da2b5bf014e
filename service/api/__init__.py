"""The HTTP API: ``routes/`` (one router per resource), ``http/`` (the plumbing under them),
``schemas/`` (request and response models) and the OpenAPI document's customisation."""

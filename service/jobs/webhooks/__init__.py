"""Webhook delivery: where a webhook may go (``targets``), one signed attempt (``send``), what
follows it (``schedule``), the dispatchers (``dispatch``) and the queue's jobs (``queued``)."""

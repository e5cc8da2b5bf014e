"""The HTTP plumbing under the routes: problem answers, middleware, content negotiation,
``Prefer``, paging, limits, dry runs, large and file bodies, streams, metrics, and who is
calling (keys, scopes, rate limits, the tenant's store)."""

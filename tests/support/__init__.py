"""Helpers shared by the tests and the benchmarks: real servers and workers, raw-socket
clients, hostile uploads, long stored histories, npm packages, PostgreSQL schemas, and what a
missing server or tool means in CI."""

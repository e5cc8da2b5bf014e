"""Run search: a filter language (a grammar, written once, parsed with lark), its fields,
its translation into SQL with bound parameters, and sorted, cursor-paged queries of a
tenant's runs that answer alike on SQLite and PostgreSQL."""

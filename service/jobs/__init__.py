"""Run execution behind one interface: ``local`` (a process pool in the server) or ``queue``
(jobs on PostgreSQL that ``tapeline worker`` processes take)."""

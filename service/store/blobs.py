"""Dataset arrays written into SQLite without copies.

Bound as a parameter, a ``bytes`` value is copied by the driver and again by SQLite as it is
inserted, so storing an array that way holds it about four times at once (the array, its
``.npy`` bytes and the two copies). On SQLite a large array is inserted as a ``zeroblob`` of
its ``.npy`` size and then written in place with incremental blob I/O, straight from the
array's memory, a chunk at a time: the upload's peak stays near the arrays themselves.
PostgreSQL's driver sends parameters as they are, so there the bytes are bound as usual.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from service.store.codec import npy_parts, pack_array

# Arrays at least this large are streamed on SQLite; below, one copy costs nothing.
STREAM_BYTES = 1 << 20
CHUNK = 4 << 20


def streams(session: Session, array: np.ndarray) -> bool:
    """Whether ``array`` is written by :func:`write` rather than bound as bytes."""
    return session.get_bind().dialect.name == "sqlite" and array.nbytes >= STREAM_BYTES


def value(session: Session, array: np.ndarray) -> Any:
    """What to put in the column on insert: the ``.npy`` bytes, or a ``zeroblob`` of their
    size to be filled by :func:`write` after the row is flushed."""
    if not streams(session, array):
        return pack_array(array)
    header, data = npy_parts(array)
    return func.zeroblob(len(header) + len(data))


def write(session: Session, table: Any, row_id: str, arrays: dict[str, np.ndarray]) -> None:
    """Fill the zeroblobs :func:`value` reserved in row ``row_id`` of ``table`` (an ORM class)
    with the arrays' ``.npy`` forms, on the session's own connection and transaction."""
    columns = {name: array for name, array in arrays.items() if streams(session, array)}
    if not columns:
        return
    rowid: int = session.execute(select(literal_column("rowid")).select_from(table)
                            .where(table.id == row_id)).scalar_one()
    connection: Any = session.connection().connection.driver_connection
    for name, array in columns.items():
        header, data = npy_parts(array)
        with connection.blobopen(table.__tablename__, name, rowid) as blob:
            blob.write(header)
            for start in range(0, len(data), CHUNK):
                blob.write(data[start:start + CHUNK])

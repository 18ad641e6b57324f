"""Many rows in one driver-level executemany: the statement compiled once, values bound as
SQLAlchemy would bind them (the columns' own bind processors), without its per-row overhead."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, bindparam
from sqlalchemy.dialects import postgresql, sqlite


class BulkInsert:
    """One INSERT (with its ON CONFLICT clause) over fixed columns, for one engine.

    `build(values)` adds the conflict clause to the dialect's insert (sqlite or postgresql)
    given with VALUES of one bind parameter per column. Ingest spent more CPU in SQLAlchemy's
    per-row parameter processing than in the database (bench/ arm 2); this keeps the same SQL
    and the same bound values.
    """

    def __init__(
        self,
        engine: Engine,
        table: Any,  # a Table (a mapped class's __table__ is typed as a FromClause)
        columns: Sequence[str],
        build: Callable[[Any], Any],
    ) -> None:
        dialect = engine.dialect
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = build(insert(table).values({c: bindparam(c) for c in columns}))
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.columns = tuple(columns)
        procs = []
        for name in self.columns:
            kind = table.c[name].type.dialect_impl(dialect)
            procs.append(kind.bind_processor(dialect))
        self.procs = procs
        order = compiled.positiontup
        if compiled.positional and order is not None:
            # The SQL's placeholders in their order (a column may appear once only: VALUES).
            where = [self.columns.index(name) for name in order]
            self._shape: Callable[[list[Any]], Any] = lambda vals: tuple(vals[i] for i in where)
        else:
            names = self.columns
            self._shape = lambda vals: dict(zip(names, vals, strict=True))

    def execute(self, connection: Connection, rows: Iterable[Sequence[Any]]) -> None:
        """Insert rows given as values in `columns` order (Python values, as for SQLAlchemy)."""
        procs = self.procs
        shaped = []
        for row in rows:
            vals = [v if p is None or v is None else p(v) for p, v in zip(procs, row, strict=True)]
            shaped.append(self._shape(vals))
        if shaped:
            connection.exec_driver_sql(self.sql, shaped)

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry's PostgreSQL store (psycopg 3, imported only when a ``postgresql://`` registry is opened).

Writers are serialised by a transaction-scoped advisory lock taken first in every write transaction
(``pg_advisory_xact_lock(<fenrir>, hashtext(current_schema()))``): the same guarantee as SQLite's
``BEGIN IMMEDIATE``, one lock per registry (per database schema), held until COMMIT or ROLLBACK and
released by the server when a client dies.  The audit chain is one sequence of entries, so every write
appends to the same tail: serialising writers costs nothing that SERIALIZABLE-with-retry would save (it
would abort nearly every concurrent writer instead), and under the lock READ COMMITTED reads see every
commit made before it.  Readers (the inventory, check mode, verify) take no such lock: a REPEATABLE READ
READ ONLY transaction sees one snapshot and never blocks a writer.
"""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import RegistryError
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.store import Store

LOCK_CLASS = 0x46464C54  # "FFLT": fenrir.fleet's advisory lock space


def import_psycopg():
    try:
        import psycopg  # noqa: F401
        from psycopg.rows import dict_row  # noqa: F401
    except ImportError:
        raise RegistryError("a postgresql:// registry needs the Python package psycopg (3.x) on the controller "
                            "(pip install 'psycopg[binary]'; in an execution environment: add it to its Python "
                            "requirements)", field="registry")
    return psycopg


class PostgresStore(Store):
    backend = "postgresql"
    types = dict(INT="BIGINT", REAL="DOUBLE PRECISION", BLOB="BYTEA")

    def __init__(self, location, busy_timeout=60.0, connect_timeout=10):
        psycopg = import_psycopg()
        from psycopg.rows import dict_row
        self.psycopg = psycopg
        self.errors = (psycopg.Error,)
        self.location = location
        self.busy_timeout = busy_timeout
        self._sql = {}
        try:
            self.conn = psycopg.connect(location.target, autocommit=True, row_factory=dict_row,
                                        connect_timeout=connect_timeout, application_name="fenrir.fleet registry")
        except psycopg.Error as exc:
            self.fail(exc, "connect")
        self.conn.execute("SET lock_timeout = %d" % int(busy_timeout * 1000))
        self.conn.execute("SET idle_in_transaction_session_timeout = %d" % int(max(busy_timeout, 60) * 10000))

    def _q(self, sql):
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return q

    def execute(self, sql, args=()):
        return self.conn.execute(self._q(sql), args or None)

    def ddl(self, text):
        self.conn.execute(text.format(**self.types))  # the whole script in one round trip (no parameters)

    def executemany(self, sql, rows):
        with self.conn.cursor() as cur:
            cur.executemany(self._q(sql), rows)

    def begin_write(self):
        # One round trip (no parameters: the simple query protocol takes both statements).
        self.conn.execute("BEGIN; SELECT pg_advisory_xact_lock(%d, hashtext(current_schema()))" % LOCK_CLASS)

    def begin_read(self):
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self):
        self.conn.execute("COMMIT")

    def rollback(self):
        if self.conn.info.transaction_status != self.psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")

    def close(self):
        self.conn.close()

    def setup(self):
        pass

    def private(self):
        pass

    def schema_version(self):
        tables = self.tables()
        if "registry_meta" not in tables:
            return 0
        value = self.get_meta("schema_version")
        return int(value) if value is not None else 0

    def set_schema_version(self, version):
        self.set_meta("schema_version", str(int(version)))

    def tables(self):
        return {r["table_name"] for r in self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}

    def columns(self, table):
        return [r["column_name"] for r in self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = %s ORDER BY ordinal_position", (table,))]

    def fail(self, exc, doing):
        text = " ".join(self.location.scrub(str(exc)).split())  # one line: libpq adds hints on lines of their own
        where = self.location.display
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate == "28P01" or "password authentication failed" in text:
            msg = ("cannot %s to the PostgreSQL registry %s: password authentication failed. Give the password in "
                   "PGPASSWORD or a passfile (PGPASSFILE, ~/.pgpass) for the user in the DSN, never on a command line"
                   % (doing, where))
        elif "no password supplied" in text:
            msg = ("cannot %s to the PostgreSQL registry %s: the server wants a password and none was found. Give it "
                   "in PGPASSWORD or a passfile (PGPASSFILE, ~/.pgpass)" % (doing, where))
        elif sqlstate in ("55P03", "57014") or "lock timeout" in text:
            msg = ("the PostgreSQL registry %s stayed locked by another run for more than %d s while trying to %s. "
                   "Let it finish and run again" % (where, self.busy_timeout, doing))
        elif sqlstate == "3D000":
            msg = "the PostgreSQL registry %s does not exist (%s): create the database first" % (where, text)
        elif sqlstate == "25006" or "read-only" in text:
            msg = ("the PostgreSQL registry %s is read-only (%s) while trying to %s: use a role with write access "
                   "or the primary server" % (where, text, doing))
        elif isinstance(exc, self_psycopg_operational()):
            msg = ("cannot reach the PostgreSQL registry %s (%s): check that the server runs and listens at that "
                   "address, and the DSN" % (where, text))
        else:
            msg = "the PostgreSQL registry %s failed while trying to %s: %s" % (where, doing, text)
        raise RegistryError(msg, field="registry")


def self_psycopg_operational():
    import psycopg
    return psycopg.OperationalError

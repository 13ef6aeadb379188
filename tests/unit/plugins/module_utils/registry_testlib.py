"""Helpers shared by the registry's unit tests (imported by them; not a test module)."""

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry

POOL = Pool()  # 172.21.0.0/24, gateway .1, pool .10 - .249


def open_reg(path, **kw):
    kw.setdefault("actor", "pytest")
    return Registry(path, **kw)


def alloc(reg, label, pool=POOL, **spec):
    """Reserve ``label`` in one transaction; returns the record after it."""
    with reg.transaction():
        return reg.ensure(dict(spec, label=label), pool)[1]


def sqlite_steps(conn, fn):
    """(SQLite VM steps taken, result) of ``fn()`` on ``conn``: a cost measure that ignores the machine's load."""
    count = [0]

    def tick():
        count[0] += 1
        return 0
    conn.set_progress_handler(tick, 10)
    try:
        result = fn()
    finally:
        conn.set_progress_handler(None, 0)
    return count[0], result

"""What every benchmark does first: run under the project's venv and import the collection from this clone.

    import benchenv
    REPO = benchenv.use_project_venv(__file__)

Started with another Python (``python bench/x.py``), the script is run again under ``.venv/bin/python`` (the
docker SDK, tomli_w, ansible-core, psycopg are there); ``collections/`` (a link back to this clone, made by
``make venv``) goes first on ``sys.path``, so ``ansible_collections.fenrir.fleet`` is this checkout.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"


def use_project_venv(script):
    """Re-execute ``script`` under the project's venv unless it already runs there; returns the repository root."""
    python = VENV / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve() \
            and not os.environ.get("FENRIR_BENCH_NO_REEXEC"):
        os.environ["FENRIR_BENCH_NO_REEXEC"] = "1"
        os.execv(str(python), [str(python), str(Path(script).resolve())] + sys.argv[1:])
    collections = str(REPO / "collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    return REPO

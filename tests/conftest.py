"""Make the collection importable as ``ansible_collections.fenrir.fleet``.

``collections/ansible_collections/fenrir/fleet`` is a link back to the repository root, so putting the
``collections`` directory of this checkout on sys.path is enough; the path is derived from this file.
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_DIR = os.path.join(REPO_ROOT, "collections")

if COLLECTIONS_DIR not in sys.path:
    sys.path.insert(0, COLLECTIONS_DIR)

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named points in long operations, where a crash would leave the most to clean up.

Production code only names them: :func:`reached` does nothing. The crash-safety tests load a fault injector
into the interpreter (``tests/integration/faults/``, put on ``PYTHONPATH`` by the tests only) that kills the
process at the point the test names, as a power cut would. No setting, variable or environment value of a
production run can trigger it: without the injector's module loaded there is nothing to call.
"""

from __future__ import annotations

import sys

INJECTOR_MODULE = "fenrir_fleet_fault_injector"


def reached(name):
    """The operation has just passed point ``name`` (after_create, after_put, before_start, ...)."""
    injector = sys.modules.get(INJECTOR_MODULE)
    if injector is not None:
        injector.reached(name)

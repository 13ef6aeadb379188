"""The crash-safety tests' fault injector: kills the process (SIGKILL, as a power cut would) at the checkpoint
named by FENRIR_FAULT_POINT. Production code never imports this; plugins/module_utils/checkpoints.py calls it
only when a test has loaded it into the interpreter (sitecustomize.py beside it)."""
import os
import signal

POINT = os.environ.get("FENRIR_FAULT_POINT")


def reached(name):
    if POINT and name == POINT:
        os.kill(os.getpid(), signal.SIGKILL)

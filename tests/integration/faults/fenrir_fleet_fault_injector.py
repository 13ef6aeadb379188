"""The crash-safety tests' fault injector: kills the process (SIGKILL, as a power cut would) at the checkpoint
named by FENRIR_FAULT_POINT. Production code never imports this; plugins/module_utils/checkpoints.py calls it
only when a test has loaded it into the interpreter (sitecustomize.py beside it).

With FENRIR_FAULT_COMMAND the process is not killed: the command runs (through the shell) when the point is reached,
and the run goes on -- e.g. a Docker host stopped in the middle of a run. FENRIR_FAULT_ONCE names a file made when it
ran, so it runs once however often the point is reached."""
import os
import signal
import subprocess

POINT = os.environ.get("FENRIR_FAULT_POINT")
COMMAND = os.environ.get("FENRIR_FAULT_COMMAND")
ONCE = os.environ.get("FENRIR_FAULT_ONCE")


def reached(name):
    if not POINT or name != POINT:
        return
    if COMMAND:
        if ONCE and os.path.exists(ONCE):
            return
        subprocess.run(COMMAND, shell=True, check=False, timeout=120)
        if ONCE:
            with open(ONCE, "w"):
                pass
        return
    os.kill(os.getpid(), signal.SIGKILL)

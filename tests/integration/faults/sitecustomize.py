"""Loaded by Python at start-up only when a crash-safety test puts this directory on PYTHONPATH."""
import fenrir_fleet_fault_injector  # noqa: F401  (its presence in sys.modules arms plugins/module_utils/checkpoints.py)

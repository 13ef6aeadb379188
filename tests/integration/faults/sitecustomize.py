"""Loaded by Python at start-up only when a crash-safety test puts this directory on PYTHONPATH.

Once the injector is in sys.modules, plugins/module_utils/checkpoints.py calls it."""
import fenrir_fleet_fault_injector  # noqa: F401  pylint: disable=unused-import

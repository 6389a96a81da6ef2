"""Fault injection for the sepbench commands (tests/test_fault_injection.py): the injector
(sepbench_faults.py, loaded by sitecustomize.py when this folder is first on PYTHONPATH) and a
fork server (forkserver.py) that runs many injected commands without paying their imports each
time."""
from pathlib import Path

DIR = Path(__file__).resolve().parent


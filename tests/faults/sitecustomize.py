"""Run at the start of every Python process that has tests/faults first on PYTHONPATH: injects the
faults SEPBENCH_FAULT asks for (tests/faults/sepbench_faults.py). The virtual environment has no
sitecustomize of its own for this one to hide."""
import sepbench_faults

sepbench_faults.install_from_env()

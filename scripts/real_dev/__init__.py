"""scripts/real_dev_sources.py by job (its docstring describes the sources)."""

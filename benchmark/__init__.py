"""sepbench's benchmark side: data tools, evaluation and the command line."""

__version__ = "0.1.0"

"""The one exception type the command line turns into a one-line message (no traceback)."""


class SepbenchError(Exception):
    """A problem with user input: a file, folder, config or checkpoint. The message names it."""

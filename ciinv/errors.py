"""The one exception type the CLI turns into a clean message (no traceback)."""


class CiinvError(Exception):
    """Bad input or a missing model: the message names the file (and frame) and the fix."""

"""The one exception type for errors a user can cause: its message names the problem and the fix."""


class WorkbenchError(Exception):
    """A user-caused problem (missing file, bad option, wrong checkpoint) with a message that says how to fix it."""

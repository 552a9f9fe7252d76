"""Exceptions raised by ferdata.

Every error a user can cause (a missing file, a malformed csv row, a shard that
does not match its manifest) is a :class:`FerdataError` whose message names the
file and the problem in one line. The CLI prints that line (and the traceback
only with ``--debug``).
"""


class FerdataError(Exception):
    """A user-facing error: bad input, bad configuration, inconsistent output."""


class DatasetFormatError(FerdataError, ValueError):
    """A dataset file or folder is not in the expected format."""


class NoFaceError(FerdataError):
    """No face was found in an image (recorded in the ingest report, not fatal)."""


class ShardError(FerdataError):
    """A shard or manifest is missing, corrupt, or from a different configuration."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised where the work can stop cleanly (``ferdata.signals``).

    A KeyboardInterrupt, so code that handles one handles this; ``signum`` is the signal.
    """

    def __init__(self, signum: int, where: str = ""):
        super().__init__(signum, where)
        self.signum, self.where = int(signum), where

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

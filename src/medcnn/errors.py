"""Errors caused by the user's input.

Every problem with a file, a dataset or an option that the user can fix raises a
:class:`MedcnnError`. The CLI prints it as a single line (``error: PATH: problem``) and
exits with status 2; other exceptions are bugs and keep their traceback.
"""
from __future__ import annotations

import os


class MedcnnError(Exception):
    """A problem the user can fix, reported on one line."""

    exit_code = 2
    max_chars = 600  # a broken file's own text (quoted in the problem) must not flood the terminal

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        problem = " ".join(str(problem).split())  # one line, whatever a library's message held
        if len(problem) > self.max_chars:
            problem = problem[: self.max_chars - 3] + "..."
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class InputError(MedcnnError):
    """An input file is unreadable, corrupt, unsupported or holds invalid values."""


class DataNotFoundError(MedcnnError):
    """A dataset file is absent and cannot be downloaded (offline, or no public source)."""


class ChecksumError(MedcnnError):
    """A dataset file is present but its checksum does not match the official one."""


class ConfigError(MedcnnError):
    """A plan, override or command-line option is invalid."""


class RunFolderError(MedcnnError):
    """A run folder is missing, incomplete, or would be overwritten."""


class ExportError(MedcnnError):
    """An export failed its parity check, or the network does not export."""

    @classmethod
    def no_inputs(cls, run: str | os.PathLike, why: str) -> ExportError:
        """The parity check has nothing to compare on."""
        return cls(f"parity needs real inputs and {why}; pass some with --inputs FILE ...", run)


class ServerError(MedcnnError):
    """A server (a PACS) is unreachable, refused the credentials, or rejected what was sent: not the
    input's fault, so a distinct exit status (3) lets a batch script retry."""

    exit_code = 3

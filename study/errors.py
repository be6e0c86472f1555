"""Errors a user can act on: each message names the spec path, file or address at fault."""


class SpecError(ValueError):
    """A spec cannot be used; the message names the file and the YAML path."""


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message names the URI."""


class StudyError(RuntimeError):
    """The study cannot start or continue; the message names the field, path or address."""


class StudyInterrupted(StudyError):
    """The user interrupted the study; its state is saved and ``--resume`` continues it."""

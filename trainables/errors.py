"""Errors a user can act on: each names the config field, file or address at fault."""


class ConfigError(ValueError):
    """A trial configuration value is invalid; the message starts with the field path."""


class DataError(ValueError):
    """A data source cannot be read; the message names the field and the file or folder."""


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch."""

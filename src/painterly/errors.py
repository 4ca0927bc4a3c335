"""painterly's exceptions.

The library never prints and never exits: it raises these with messages written for users, and
the command line turns any of them into one line on stderr and exit code 2.
"""


class PainterlyError(Exception):
    """Base class: a problem the user can fix (bad input, missing weights, bad settings)."""


class ImageError(PainterlyError):
    """An image file that cannot be read or written."""


class WeightsError(PainterlyError):
    """Weights that are missing, cannot be downloaded, or have the wrong layout."""


class SettingsError(PainterlyError):
    """A setting out of range or inconsistent with the others."""


class Cancelled(PainterlyError):
    """Raised by a progress callback to stop a running job early."""


class NonFiniteLossError(PainterlyError):
    """An optimisation or a training run whose loss became NaN or infinite (it diverged)."""

"""The one error type users see: it says what is wrong and how to fix it."""


class HarmoVidError(ValueError):
    """Bad input or a missing resource, with a message naming the problem and the fix."""

"""Argument checks shared by the commands."""


def below_minimum(checks):
    """The one-line message for the first (flag, value, minimum) whose value is under its minimum, or None."""
    for flag, value, minimum in checks:
        if value < minimum:
            return f"{flag} must be at least {minimum}, got {value}"
    return None

"""The error every layer raises for a value the user gave that cannot be used: it names the
flag as typed, and ``thyroid.cli`` prints it as one line with the usage exit status."""


class FlagValueError(ValueError):
    """``--flag=value: reason``; ``flag`` names the flag, ``value`` is what was given."""

    def __init__(self, flag, value, reason):
        super().__init__(f"--{flag}={value}: {reason}")
        self.flag, self.value, self.reason = flag, value, reason

"""Variable scopes as the restore and trainable-scope flags take them. Beside ``restore``,
which matches them, and free of TensorFlow, so entry points parse their flags before it
loads."""


def parse_scopes(scopes):
    """"a, b" / ["a", " b"] / None -> ("a", "b") (empty entries dropped)."""
    if scopes is None:
        return ()
    if isinstance(scopes, str):
        scopes = scopes.split(",")
    return tuple(s.strip() for s in scopes if s and s.strip())

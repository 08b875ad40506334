"""Helpers for the wording of tfprune's errors and warnings."""


def first_names(names, shown=3):
    """"a, b, c and 4 more": the first `shown` of `names`, for messages.

    >>> first_names(["'a'", "'b'", "'c'", "'d'"], shown=2)
    "'a', 'b' and 2 more"
    """
    names = list(names)
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")

"""`Configurable`: the config, equality and hashing that importance criteria, penalties and budgets share.

Two criteria (or penalties) are equal when they are of the same class with the same config, so
that every wrapper of one `prune_channels` call agrees on its settings, also after loading.
"""


class Configurable:
    """Base for objects defined by their class and `get_config()`.

    Example:

    >>> class Scaled(Configurable):
    ...     def __init__(self, factor=1.0):
    ...         self.factor = factor
    ...     def get_config(self):
    ...         return {"factor": self.factor}
    >>> Scaled(2.0) == Scaled.from_config({"factor": 2.0})
    True
    """

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))

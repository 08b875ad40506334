"""PEP 562 module attributes that import their module on first use.

Example:

>>> __getattr__ = attribute_loader("tfprune.deploy", globals(), {"export_tflite": "tfprune.deploy.export"})
"""

import importlib


def attribute_loader(package, namespace, public):
    """A module `__getattr__` that imports `public[name]` (a module path) the first time `name` is read
    and keeps the value in `namespace`, the package's globals()."""

    def __getattr__(name):
        if name not in public:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        value = getattr(importlib.import_module(public[name]), name)
        namespace[name] = value
        return value

    return __getattr__

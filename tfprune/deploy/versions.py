"""The package versions behind a written report, read from package metadata (imports nothing heavy).

Example:

>>> versions()
{'tfprune': '0.1.0', 'tensorflow': '2.21.0', 'keras': '3.15.1', 'ai_edge_litert': '2.3.0'}
"""

import importlib.metadata

PACKAGES = {"tfprune": "tfprune", "tensorflow": "tensorflow", "keras": "keras", "ai_edge_litert": "ai-edge-litert"}


def versions():
    """{name: installed version or None} for tfprune, TensorFlow, Keras and LiteRT."""
    found = {}
    for name, distribution in PACKAGES.items():
        try:
            found[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found

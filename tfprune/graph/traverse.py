"""Walking the layers a model holds: every one, or the outermost ones of a kind.

Both descend into nested models, users' container layers and tfprune's wrappers alike.

Example:

>>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")], name="inner")
>>> outer = keras.Sequential([keras.Input((4,)), inner], name="outer")
>>> [layer.name for layer in layers_in(outer)]
['inner', 'd']
>>> [layer.name for layer in outermost(outer, lambda layer: isinstance(layer, keras.layers.Dense))]
['d']
"""

from tfprune.graph import compat


def layers_in(layer):
    """Every layer inside `layer` (not `layer` itself), depth first, each once."""
    return compat.flatten_layers(layer)


def outermost(layer, matches):
    """The layers inside `layer` for which `matches(layer)` holds, depth first, without searching inside them."""
    found = {}
    for held in compat.held_layers(layer):
        if matches(held):
            found[id(held)] = held
        else:
            found.update((id(inner), inner) for inner in outermost(held, matches))
    return list(found.values())

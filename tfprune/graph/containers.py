"""Users' own container layers and subclassed models, with pruned layers inside.

A container is a layer or subclassed model written by a user (keras.io's
`TransformerBlock`, a `class Net(keras.Model)`) that holds other layers as
attributes. tfprune addresses those layers by path, `("block", "dense")` or
`("blocks", 2)`, and swaps them for wrappers. So that such a container saves
and loads as a `.keras` file, its class becomes a subclass of the user's class
mixing in `PrunedContainer`, whose config records the swapped layers.
"""

import keras

from tfprune import registry
from tfprune.graph import compat
from tfprune.apply.wrapper import PruningWrapper, pruning_wrappers


def is_graph_model(layer):
    return isinstance(layer, keras.Sequential) or compat.is_functional(layer)


def is_user_container(layer):
    """True for a layer or subclassed model holding layers that tfprune descends into.

    Users' layers and models qualify, and so do keras-hub's (`TransformerEncoder`);
    Keras' own composite layers (attention, RNN, wrappers), layers the registry
    prunes whole and tfprune's wrappers do not; Sequential and Functional models
    are cloned.
    """
    keras_own = type(layer).__module__.split(".")[0] in ("keras", "tfprune")
    return bool(compat.held_layers(layer)) and not keras_own and not is_graph_model(layer) and not registry.is_prunable(layer)


def leaf_paths(container):
    """Paths of the layers held by `container`, descending into nested user containers.

    Private attributes count: keras-hub's layers keep theirs as `self._self_attention_layer`.
    """
    held = {id(layer) for layer in compat.held_layers(container)}
    for name, value in list(compat.layer_attributes(container).items()):
        if name in compat.keras_attributes():
            continue
        if isinstance(value, keras.layers.Layer) and id(value) in held:
            yield from _paths_below((name,), value)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if isinstance(item, keras.layers.Layer) and id(item) in held:
                    yield from _paths_below((name, index), item)


def _paths_below(path, layer):
    if is_user_container(layer):
        for below in leaf_paths(layer):
            yield path + below
    else:
        yield path


def user_weights(layer):
    """The weights of `layer` in Keras' order, but without tfprune's state (masks, pruning steps, gates).

    They are the same, value for value, before pruning, right after it and after stripping.
    """
    if isinstance(layer, PruningWrapper):
        return user_weights(layer.layer)
    weights = compat.own_variables(layer)
    for held in compat.held_layers(layer):
        weights += user_weights(held)
    return list({id(v): v for v in weights}.values())


def get_at(container, path):
    for key in path:
        container = container[key] if isinstance(key, int) else getattr(container, key)
    return container


def set_at(container, path, new):
    """Puts layer `new` at `path` in place of the layer there, keeping the owner's layer order."""
    owner = get_at(container, path[:-2] if isinstance(path[-1], int) else path[:-1])
    compat.replace_held_layer(owner, get_at(container, path), new)
    if isinstance(path[-1], int):
        get_at(container, path[:-1])[path[-1]] = new
    else:
        setattr(owner, path[-1], new)


def held_at(container, path):
    """The layer at `path` in `container`, or None if there is none (yet: `build()` may create it)."""
    try:
        return get_at(container, path)
    except (AttributeError, IndexError):
        return None


def swap_in(container, replacements):
    """Puts each layer of `replacements` ({path: layer}) at its path in `container`, where another is held now."""
    for path, new in replacements.items():
        held = held_at(container, path)
        if held is not None and held is not new:
            set_at(container, path, new)


@keras.saving.register_keras_serializable("tfprune")
class PrunedContainer:
    """Mixed into a user's container class once pruned layers are swapped in, so that it saves and loads.

    Its config is the user's own config plus, for every path where the user's
    constructor would create a different layer, the layer that is there now.
    """

    @classmethod
    def user_class(cls):
        return cls.__mro__[cls.__mro__.index(PrunedContainer) + 1]

    def get_config(self):
        user_class = self.user_class()
        return {
            "container": {
                "module": user_class.__module__,
                "class_name": user_class.__name__,
                "config": user_class.get_config(self),
                "registered_name": keras.saving.get_registered_name(user_class),
            },
            "swapped": [
                {"path": list(path), "layer": keras.saving.serialize_keras_object(get_at(self, path))}
                for path in leaf_paths(self)
                if pruning_wrappers(get_at(self, path))
            ],
        }

    @classmethod
    def from_config(cls, config):
        container = keras.saving.deserialize_keras_object(config["container"])
        swaps = {tuple(s["path"]): keras.saving.deserialize_keras_object(s["layer"]) for s in config["swapped"]}
        swap_in(container, swaps)
        container.__class__ = _pruned_class(user_class(container))
        # Kept for build_from_config, for the layers that the user's build() creates.
        compat.set_untracked(container, "_swaps_after_build", swaps)
        return container

    def build_from_config(self, config):
        super().build_from_config(config)
        swap_in(self, getattr(self, "_swaps_after_build", {}))


_PRUNED_CLASSES = {}


def user_class(container):
    """The user's own class of `container`, pruned or not."""
    cls = type(container)
    return cls.user_class() if issubclass(cls, PrunedContainer) else cls


def mark_swapped(container):
    """Gives `container` the saveable pruned variant of its user class if it now holds wrappers, else the user class."""
    plain = user_class(container)
    if not pruning_wrappers(container):
        container.__class__ = plain
        return
    container.__class__ = _pruned_class(plain)


def _pruned_class(plain):
    if plain not in _PRUNED_CLASSES:
        pruned = type(plain.__name__, (PrunedContainer, plain), {"__module__": plain.__module__})
        # Every pruned variant serializes as "tfprune>PrunedContainer"; loading needs only the generic from_config.
        _PRUNED_CLASSES[plain] = keras.saving.register_keras_serializable("tfprune", "PrunedContainer")(pruned)
    return _PRUNED_CLASSES[plain]

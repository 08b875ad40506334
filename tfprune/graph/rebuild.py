"""Rebuilding a model with some layers replaced, leaving the original untouched.

Used both to wrap layers for pruning and to strip the wrappers again.
`rebuild(model, replace)` calls `replace(layer)` on every leaf layer of a
Sequential, Functional or subclassed model (nested models and users' container
layers included); `replace` returns a new, built layer with its weights set.
Sequential and Functional models go through `keras.models.clone_model`;
subclassed models and container layers are re-created from their config and the
layers they hold swapped by path (see `containers`), or, with `copy=False`, have
the replacements swapped into them in place.
"""

import keras

from tfprune.graph import compat
from tfprune.graph.containers import (
    get_at,
    held_at,
    is_graph_model,
    is_user_container,
    leaf_paths,
    mark_swapped,
    set_at,
    swap_in,
    user_class,
    user_weights,
)


def copy_layer(layer):
    """An independent copy of `layer` with the same weights, built if `layer` is.

    A layer without weights that cannot be re-created from its config (a `Lambda`
    of a Python lambda, under Keras' safe mode) is returned itself: it holds no
    state to share with the original.
    """
    try:
        new = _recreate(layer, type(layer))
    except ValueError:
        if layer.weights:
            raise
        return layer
    if layer.built:
        build_config = layer.get_build_config()
        if not build_config and layer.weights:
            raise ValueError(
                f"Cannot copy layer '{layer.name}': it was built without recorded input shapes. "
                "Build the model by calling it on data (or with keras.Input) first."
            )
        if build_config:
            new.build_from_config(build_config)
        if layer.weights:
            new.set_weights(layer.get_weights())
    return new


def same_layer(layer):
    """`layer` itself: what `copy=False` keeps where a copy would be made."""
    return layer


def rebuild(model, replace, copy=True):
    """A model like `model` where each leaf layer `l` is replaced by `replace(l)`.

    A layer held in several places (shared, or at two attributes) is replaced once. With
    `copy=False` the users' containers (and a subclassed `model`) are not re-created: the
    replacements are swapped into them in place, for classes that cannot be re-created from a config.
    """
    return _rebuild(model, _once_per_layer(replace), copy)


def _once_per_layer(replace):
    replaced = {}

    def replace_once(layer):
        if id(layer) not in replaced:
            replaced[id(layer)] = replace(layer)
        return replaced[id(layer)]

    return replace_once


def _rebuild(model, replace, copy):
    if is_graph_model(model):
        if not model.built and not isinstance(model, keras.Sequential):
            raise ValueError(
                f"Model '{model.name}' is not built: give it an input shape (keras.Input) or call it on data first."
            )
        return keras.models.clone_model(
            model,
            input_tensors=_named_inputs(model),
            clone_function=lambda op: _replace_operation(op, replace, copy),
            recursive=True,
        )
    if copy:
        clone = _rebuild_container(model, replace)
        if model.compiled:  # as clone_model does for the graph models above
            clone.compile_from_config(model.get_compile_config())
        return clone
    trainable = {id(v) for v in model.trainable_variables}
    _swap_in_place(model, replace)
    if model.compiled and {id(v) for v in model.trainable_variables} != trainable:  # L0 gates: a new optimizer
        model.compile_from_config(model.get_compile_config())
    return model


def _replace_operation(op, replace, copy):
    if not isinstance(op, keras.layers.Layer):
        return op  # an operation written as an expression (`h + x`) is a graph node, not a layer: kept
    if is_user_container(op):
        return _rebuild_container(op, replace) if copy else _swap_in_place(op, replace)
    return replace(op)


def _named_inputs(model):
    """Fresh inputs named like the model's input layers (clone_model would rename them), or None."""
    if not compat.is_functional(model):
        return None
    return keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, sparse=t.sparse, name=compat.producer(t).name),
        model.input,
    )


def _rebuild_container(container, replace):
    """A copy of a user's subclassed model or container layer, each held layer `l` replaced by `replace(l)`.

    Replacements go in where `__init__` created the held layer, and again after `build()`, which may
    create (keras-hub's layers) or re-create them; every other weight is then copied across, so the
    copy starts from exactly the original's values.
    """
    clone = _fresh_copy(container)
    replacements = {}
    for path in leaf_paths(container):
        held = get_at(container, path)
        replacements[path] = _rebuild(held, replace, True) if is_graph_model(held) else replace(held)
    swap_in(clone, replacements)
    build_config = container.get_build_config()
    if container.built and build_config and not clone.built:  # some layers build in __init__ from their config
        clone.build_from_config(build_config)
        clone.built = True  # as Keras' own deserialization does: a subclassed model's build leaves it unset
    swap_in(clone, replacements)
    missing = [path for path, new in replacements.items() if held_at(clone, path) is not new]
    if missing:
        raise ValueError(
            f"Cannot copy layer '{container.name}' ({user_class(container).__name__}): its copy, re-created from "
            f"get_config() and built, has no layer at {'.'.join(map(str, missing[0]))} where the original has one. "
            "Create held layers in __init__() or build() from the config alone, or prune in place with copy=False."
        )
    _copy_other_weights(container, clone, replacements.values())
    mark_swapped(clone)
    return clone


def _swap_in_place(container, replace):
    """`container` itself, each held layer `l` replaced by `replace(l)` (copy=False)."""
    for path in list(leaf_paths(container)):
        held = get_at(container, path)
        set_at(container, path, _rebuild(held, replace, False) if is_graph_model(held) else replace(held))
    mark_swapped(container)
    return container


def _fresh_copy(container):
    """`container` re-created, unbuilt, from its config (its user class's, if pruned before)."""
    return _recreate(container, user_class(container))


def _recreate(layer, cls):
    """`cls.from_config(cls.get_config(layer))`, or a ValueError saying what the user must add."""
    try:
        return cls.from_config(cls.get_config(layer))
    except Exception as error:  # get_config/from_config of user code can fail in many ways
        kind = "model" if isinstance(layer, keras.Model) else "layer"
        raise ValueError(
            f"Cannot copy {kind} '{layer.name}' ({cls.__name__}): from_config(get_config()) failed with "
            f"{type(error).__name__}: {error}. tfprune prunes a copy and leaves yours untouched, so {cls.__name__} "
            "must be re-creatable from its config: let __init__ take **kwargs and pass them to "
            "super().__init__(**kwargs), and give it a get_config() returning its other constructor arguments. "
            "Or prune your model's layers in place, sharing them with your model: "
            "pass copy=False (to prune_low_magnitude, prune_channels, snip, grasp, prune_once or sparse_training), "
            "then strip_pruning(pruned, copy=False)."
        ) from error


def _copy_other_weights(container, clone, placed):
    """Copies into `clone` the weights of `container` that the `placed` layers do not carry.

    Those are the container's own variables and those of held layers no path reaches. Both sides must
    hold the same weights in the same order, tfprune's own state aside; anything else is an error,
    never a silently re-initialised weight.
    """
    source, target = user_weights(container), user_weights(clone)
    if [tuple(v.shape) for v in source] != [tuple(v.shape) for v in target]:
        raise ValueError(
            f"Cannot copy layer '{container.name}' ({user_class(container).__name__}): its copy, re-created from "
            f"get_config() and built from get_build_config(), holds {len(target)} weights where the original "
            f"holds {len(source)} (or of other shapes), so the copy cannot start from the original's values. "
            "Create every weight and sub-layer in __init__() or build() from the config alone, or prune in "
            "place with copy=False."
        )
    carried = {id(v) for layer in placed for v in layer.weights}
    for source_variable, target_variable in zip(source, target):
        if id(target_variable) not in carried:
            target_variable.assign(source_variable)

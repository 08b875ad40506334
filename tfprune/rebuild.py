"""Rebuilding a model with some layers replaced, leaving the original untouched.

Used both to wrap layers for pruning and to strip the wrappers again.
`rebuild(model, replace)` calls `replace(layer)` on every leaf layer of a
Sequential, Functional or subclassed model (nested models included); `replace`
returns a new, built layer with its weights set. Sequential and Functional models
go through `keras.models.clone_model`; subclassed models are re-created from their
config and their layer attributes swapped before first use.
"""

import keras
from keras.src.models.functional import Functional

from tfprune import registry


def copy_layer(layer):
    """An independent copy of `layer` with the same weights, built if `layer` is."""
    new = layer.__class__.from_config(layer.get_config())
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


def _is_graph_model(model):
    return isinstance(model, (keras.Sequential, Functional))


def rebuild(model, replace):
    """A new model like `model` where each leaf layer `l` is replaced by `replace(l)`."""
    if _is_graph_model(model):
        if not model.built and not isinstance(model, keras.Sequential):
            raise ValueError(
                f"Model '{model.name}' is not built: give it an input shape (keras.Input) or call it on data first."
            )
        # Operations written as expressions (`h + x`) are graph nodes but not layers: kept as they are.
        return keras.models.clone_model(
            model,
            input_tensors=_named_inputs(model),
            clone_function=lambda op: replace(op) if isinstance(op, keras.layers.Layer) else op,
            recursive=True,
        )
    return _rebuild_subclassed(model, replace)


def _named_inputs(model):
    """Fresh inputs named like the model's input layers (clone_model would rename them), or None."""
    if not isinstance(model, Functional):
        return None
    return keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, sparse=t.sparse, name=t._keras_history.operation.name),
        model.input,
    )


def _rebuild_subclassed(model, replace):
    try:
        clone = model.__class__.from_config(model.get_config())
    except Exception as error:  # get_config/from_config of user code can fail in many ways
        raise ValueError(
            f"Cannot copy subclassed model '{model.name}' ({type(model).__name__}): from_config(get_config()) "
            f"failed with {type(error).__name__}: {error}. Give its __init__ serializable arguments or "
            "implement get_config()."
        ) from error
    _swap_sublayers(model, clone, replace)
    build_config = model.get_build_config()
    if model.built and build_config:
        clone.build_from_config(build_config)
    return clone


def _swap_sublayers(original, clone, replace):
    """Replaces the layer attributes of `clone` by `replace(<same attribute of original>)`."""
    for name, value in list(vars(original).items()):
        if name.startswith("_"):
            continue
        if isinstance(value, keras.layers.Layer):
            setattr_layer(clone, name, _replacement(value, getattr(clone, name), replace))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, keras.layers.Layer) for v in value):
            items = getattr(clone, name)
            for i, v in enumerate(value):
                if isinstance(v, keras.layers.Layer):
                    new = _replacement(v, items[i], replace)
                    _untrack(clone, items[i])
                    items[i] = new


def _replacement(original, fresh, replace):
    if _is_graph_model(original):
        return rebuild(original, replace)
    if _is_user_container(original):
        _swap_sublayers(original, fresh, replace)
        return fresh
    return replace(original)


def _is_user_container(layer):
    # A user's block of layers is descended into; Keras' own composite layers
    # (attention, RNN, wrappers), tfprune wrappers and PrunableLayers are replaced whole.
    library = type(layer).__module__.split(".")[0] in ("keras", "tfprune")
    return bool(layer._layers) and not library and not registry.has_custom_prunable_weights(layer)


def _untrack(parent, layer):
    if layer in parent._layers:
        parent._layers.remove(layer)


def setattr_layer(parent, name, new):
    """Sets `parent.<name> = new`, untracking the layer it replaces."""
    _untrack(parent, getattr(parent, name))
    was_locked = parent._tracker.locked
    parent._tracker.unlock()
    setattr(parent, name, new)
    if was_locked:
        parent._tracker.lock()

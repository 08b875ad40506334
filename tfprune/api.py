"""Public entry points: `prune_low_magnitude`, `strip_pruning`, `prune_scope`.

Names and defaults follow TensorFlow Model Optimization so that migrating from
tfmot is an import change, but everything here works on Keras 3 models.
"""

import contextlib
import json
import os
import re
import warnings
import zipfile

import h5py
import keras

from tfprune import masks as masks_lib
from tfprune import registry, schedules
from tfprune.graph.rebuild import copy_layer, rebuild, same_layer
from tfprune.policy import PruningPolicy
from tfprune.weight_pruning import warn_if_m_by_n_ignores_schedule
from tfprune.selection.allocation import WEIGHT_SCOPES, check_scope
from tfprune.apply.wrapper import PruneLowMagnitude, PruningWrapper, pruning_wrappers


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    scope="layer",
    max_layer_sparsity=None,
    strict=True,
    copy=True,
    importance="magnitude",
    **kwargs,
):
    """Wraps a layer, a list of layers or a model so that its weights get pruned by magnitude.

    Args:
        to_prune: a Keras layer, a list of layers, or a Sequential, Functional,
            nested or subclassed model. Models are copied; the original is not modified.
            Layers already wrapped inside a model are kept as they are.
        pruning_schedule: when and how far to prune; default `ConstantSparsity(0.5, 0)`.
        block_size: prune (rows, columns) blocks of each weight's input x output view.
        block_pooling_type: "AVG" or "MAX", how a block's magnitude is pooled.
        pruning_policy: a `PruningPolicy` choosing which layers to prune, e.g.
            `PruneForLatencyOnXNNPack()`.
        sparsity_m_by_n: `(m, n)` zeroes the m smallest of every n consecutive weights
            along the input axis, as in tfmot: (2, 4) is 2:4 sparsity, (1, 4) gives 25% zeros.
            As in tfmot, N:M masks are computed once, at step 1 (the first training batch),
            and then held: `pruning_schedule` is not used, and passing one other than the
            default warns.
        scope: "layer" prunes every weight to the target; "global" ranks all
            weights of the model together, so total sparsity hits the target; "erk"
            spreads the target by Erdős–Rényi-Kernel (as RigL does): each weight gets a
            sparsity that grows with its size, the total at the target
            (`selection.distributions.erk_sparsities`).
        max_layer_sparsity: with scope="global" or "erk", no single weight is pruned beyond this
            fraction (default 0.99), so that global ranking never cuts a small layer off;
            `sparsity_report` marks the weights held there.
        strict: raise (the default, as tfmot does) when the model holds a weighted layer
            that tfprune does not know how to prune; `strict=False` leaves it dense with a warning.
        importance: what ranks the weights at each mask update: "magnitude" (tfmot's, the default), "lamp"
            (layer-adaptive magnitude: with scope="global", it chooses each layer's sparsity), "obd" (Optimal Brain
            Damage, 1/2 x Fisher x w^2, the Fisher from the batches since the last update), "movement" (-sum of
            gradient x weight over the fit, for fine-tuning) or an `Importance`; see
            `tfprune.criteria.importance`. "obd" and "movement" read the gradients the model's optimizer receives.
        copy: True (the default) prunes a copy of the model and leaves yours dense. False prunes
            your model's own layers in place, as tfmot does: the returned model shares them and
            their weights with yours, and your own container layers and subclassed model get the
            wrappers swapped in. For layers that cannot be re-created from their config (keras.io
            examples without `get_config`); strip with `strip_pruning(pruned, copy=False)`.
        **kwargs: Keras layer arguments for the wrapper (such as `input_shape`), when
            `to_prune` is a single layer.

    Returns:
        The pruned layer(s) or model. Train it with `callbacks=[UpdatePruningStep()]`.

    Example:

    ```python
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, epochs=5, callbacks=[tfprune.UpdatePruningStep()])
    ```
    """
    pruning_schedule = pruning_schedule or schedules.ConstantSparsity(0.5, 0)
    masks_lib.Granularity(block_size, block_pooling_type, sparsity_m_by_n)  # validates early
    check_scope(scope, WEIGHT_SCOPES)
    if scope != "layer" and sparsity_m_by_n is not None:
        raise ValueError("N:M sparsity is local to groups of n weights; use scope='layer' with `sparsity_m_by_n`.")
    warn_if_m_by_n_ignores_schedule(pruning_schedule, sparsity_m_by_n)
    if getattr(pruning_schedule, "masks_set_by", None):
        warnings.warn(f"{type(pruning_schedule).__name__} does not set the first masks, so this model stays dense "
                      f"until they are set: use {pruning_schedule.masks_set_by}, which sets them, or "
                      "PruningController(pruned).prune_to(sparsity).", stacklevel=2)
    policy = pruning_policy or PruningPolicy()
    settings = dict(
        pruning_schedule=pruning_schedule,
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
        scope=scope,
        max_layer_sparsity=max_layer_sparsity,
        importance=importance,
    )

    def wrap(layer, **layer_kwargs):
        wrapper = PruneLowMagnitude(layer, **settings, **layer_kwargs)
        if layer.built:
            wrapper.build()
        return wrapper

    if isinstance(to_prune, keras.Model):
        policy.ensure_model_supports_pruning(to_prune)
        keep = copy_layer if copy else same_layer
        return rebuild(to_prune, lambda layer: _prune_or_keep(layer, wrap, policy, strict, keep), copy=copy)
    if isinstance(to_prune, (list, tuple)):
        return [prune_low_magnitude(layer, pruning_policy=pruning_policy, strict=strict, **settings, **kwargs)
                for layer in to_prune]
    if isinstance(to_prune, keras.layers.Layer):
        _check_not_pruned(to_prune)
        return wrap(to_prune, **kwargs)
    message = (  # tfmot's words, so that code checking them keeps working
        "`prune_low_magnitude` can only prune an object of the following types: keras.models.Sequential, keras "
        "functional model, keras.layers.Layer, list of keras.layers.Layer. You passed an object of type: "
        f"{type(to_prune).__name__}."
    )
    if type(to_prune).__module__.split(".")[0] in ("tf_keras", "tensorflow"):
        message += " tfprune works with Keras 3 (`import keras`); tf_keras / Keras 2 objects are not supported."
    raise ValueError(message)


def _check_not_pruned(layer):
    if isinstance(layer, PruneLowMagnitude):
        raise ValueError(
            f"'{layer.name}' is already pruned. Prune the original layer once, or call "
            "tfprune.strip_pruning() first to start again from the pruned weights."
        )


def _prune_or_keep(layer, wrap, policy, strict, keep):
    """`layer` wrapped for pruning, or kept (by `keep`: a copy, or the layer itself) if it is not to be pruned."""
    if isinstance(layer, PruneLowMagnitude):
        return keep(layer)  # pruned before: kept with its own settings, masks and step
    if not registry.is_supported(layer):
        if strict:
            raise ValueError(registry.unsupported_message(layer) + " Or pass strict=False to leave it dense.")
        warnings.warn(registry.unsupported_message(layer) + " It stays dense (strict=False).", stacklevel=4)
        return keep(layer)
    if isinstance(layer, keras.layers.InputLayer) or not policy.allow_pruning(layer):
        return keep(layer)
    return wrap(keep(layer))


def strip_pruning(model, copy=True):
    """Returns a plain Keras model with the pruned weights (zeros included) and no tfprune classes.

    Its outputs equal the pruned model's in inference. A single wrapper gives back a
    copy of its inner layer. The pruned model is not modified; a model without
    pruned layers is returned as it is, with a warning. `copy=False` (for a model pruned
    with `copy=False`) hands back the wrapped layers themselves instead of copies, holding
    the pruned values: the pruned model must not be used afterwards.

    Example:

    ```python
    final = tfprune.strip_pruning(pruned)
    final.save("small.keras")
    ```
    """
    stripped = _stripped_layer if copy else _unwrapped_layer
    if isinstance(model, PruningWrapper):
        return stripped(model)
    if not isinstance(model, keras.Model):
        raise ValueError(f"strip_pruning expects a Keras model or a pruned layer, got {type(model).__name__}.")
    if not pruning_wrappers(model):
        warnings.warn(f"Model '{model.name}' has no pruned layers; strip_pruning returns it unchanged.", stacklevel=2)
        return model
    keep = copy_layer if copy else same_layer
    return rebuild(model, lambda layer: stripped(layer) if isinstance(layer, PruningWrapper) else keep(layer), copy=copy)


def _stripped_layer(wrapper):
    inner = copy_layer(wrapper.layer)
    if wrapper.built:
        inner.set_weights(wrapper.masked_values())
    return inner


def _unwrapped_layer(wrapper):
    if wrapper.built:
        wrapper.release()
    return wrapper.layer


@contextlib.contextmanager
def prune_scope():
    """Custom-object scope for loading pruned models, as in tfmot.

    tfprune registers its classes with Keras, so `keras.models.load_model` works
    without it; the scope is kept so that tfmot code runs unchanged.

    Example:

    ```python
    with tfprune.prune_scope():
        model = keras.models.load_model("pruned.keras")
    ```
    """
    with keras.saving.custom_object_scope({"PruneLowMagnitude": PruneLowMagnitude, **_schedule_classes()}):
        yield


def _schedule_classes():
    return {cls.__name__: cls for cls in (schedules.ConstantSparsity, schedules.PolynomialDecay)}


def load_model(path, **kwargs):
    """Loads a (possibly mid-pruning) `.keras` or legacy `.h5` model, with a clear error for a bad file.

    Masks and the schedule step are restored, so `fit` continues where it stopped.
    Keyword arguments (`custom_objects`, `compile`, `safe_mode`) go to `keras.models.load_model`.

    Example:

    ```python
    model = tfprune.load_model("checkpoint.keras")
    model.fit(x, y, callbacks=[tfprune.UpdatePruningStep()])
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at '{path}'.")
    is_h5 = h5py.is_hdf5(path)
    if is_h5 and not path.endswith((".h5", ".hdf5")):
        raise ValueError(f"'{path}' is an HDF5 (legacy Keras) file: give it a .h5 extension so that Keras reads it as one.")
    if not is_h5 and not zipfile.is_zipfile(path):
        raise ValueError(
            f"'{path}' is not a valid .keras archive (corrupt or truncated: a .keras file is a zip). "
            "Re-save the model, or restore it from an earlier checkpoint."
        )
    try:
        with prune_scope():
            return keras.models.load_model(path, **kwargs)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"Could not load '{path}': its model configuration is not valid JSON ({error}). The file is corrupt: "
            "re-save the model, or restore it from an earlier checkpoint."
        ) from error
    except (TypeError, ValueError) as error:
        missing = _missing_class(error)
        if missing:
            raise MissingCustomClassError(
                missing,
                f"Could not load '{path}': it holds the custom class '{missing}', which Keras cannot find. Decorate "
                f"{missing} with @keras.saving.register_keras_serializable() and import its module before loading, "
                f"or pass custom_objects={{'{missing}': {missing}}}."
            ) from error
        if "safe_mode" in str(error):
            raise  # Keras' own message says what to do about a Python lambda in the file
        raise ValueError(f"Could not load '{path}': {type(error).__name__}: {error}") from error
    except (zipfile.BadZipFile, OSError, KeyError, EOFError) as error:
        raise ValueError(
            f"Could not load '{path}': {type(error).__name__}: {error}. The file is corrupt, truncated or "
            "was not written by keras.Model.save()."
        ) from error


class MissingCustomClassError(ValueError):
    """A saved model holds a custom class that Keras cannot find; `class_name` names it."""

    def __init__(self, class_name, message):
        super().__init__(message)
        self.class_name = class_name


def _missing_class(error):
    """The class name in Keras' "Could not locate class 'X'" anywhere in the chain of `error`, or None."""
    while error is not None:
        found = re.search(r"(?:Could not locate (?:class|function)|Unknown [a-z ]+:) '([^']+)'", str(error))
        if found:
            return found.group(1)
        error = error.__cause__ or error.__context__
    return None

"""The one mask constraint, and the weights it masks.

A `MaskedWeight` is a weight of a wrapped layer and a mask on it: entry-wise (weight
pruning: the mask has the weight's shape), or one entry per channel along an axis
(channel pruning: each channel `repeat` entries wide). `KeepPruned` is the variable
constraint `w -> inner(w) * mask` that keeps the pruned entries at zero after every
optimizer step; a weight masked twice (along two channel axes) carries two, chained.

Example:

>>> kernel = keras.Variable(np.ones((2, 3)))
>>> mask = keras.Variable([1.0, 0.0, 1.0])
>>> masked = MaskedWeight(kernel, mask, axis=1)
>>> host_value(masked.full_mask())
array([[1., 0., 1.],
       [1., 0., 1.]], dtype=float32)
"""

import dataclasses

import keras
from keras import ops


@dataclasses.dataclass(frozen=True)
class MaskedWeight:
    """`mask` on `variable`: of its shape (`axis` None), or one entry per channel along `axis`, `repeat` wide.

    `role` names the channel role the mask belongs to (None for a weight mask). Not a tuple, so that a
    wrapper holding it does not track its variables as its own.
    """

    variable: keras.Variable
    mask: keras.Variable
    axis: int = None
    repeat: int = 1
    role: str = None

    def full_mask(self, mask=None, dtype=None):
        """`mask` (default the mask variable's value) shaped to multiply the weight, in `dtype` (the weight's)."""
        mask = ops.cast(self.mask.value if mask is None else mask, dtype or self.variable.dtype)
        if self.axis is None:
            return mask
        return broadcast_mask(mask, self.axis, self.repeat, len(self.variable.shape))

    def keep_pruned(self):
        """Sets `KeepPruned` on the weight, on top of the constraint it has."""
        self.variable.constraint = KeepPruned(self, self.variable.constraint)


class KeepPruned:
    """The variable constraint `w -> inner(w) * mask` that keeps pruned entries at zero after optimizer steps.

    Set on top of the variable's own constraint (`inner`) by `MaskedWeight.keep_pruned`.
    """

    # True while JAX's train step is traced (`stateless.masked_train_step`): the step's masks are arrays of
    # its state, which the optimizer's stateless scope does not hold, so they are applied after it instead.
    deferred = False

    def __init__(self, masked, inner=None):
        self.masked, self.inner = masked, inner

    def __call__(self, value):
        own = self.inner
        while isinstance(own, KeepPruned):  # a weight masked along two channel axes carries two
            own = own.inner
        if own is not None:
            value = own(value)
        return value if self.deferred else self.apply_mask(value)

    def apply_mask(self, value):
        """`value` with the pruned entries zeroed, by the current values of this mask and of the `KeepPruned`
        constraints under it."""
        value = ops.multiply(value, self.masked.full_mask(dtype=value.dtype))
        return self.inner.apply_mask(value) if isinstance(self.inner, KeepPruned) else value


def broadcast_mask(mask, axis, repeat, rank):
    """A per-channel mask shaped to multiply a weight whose `axis` holds `repeat` entries per channel."""
    if repeat > 1:
        mask = ops.repeat(mask, repeat)
    shape = [1] * rank
    shape[axis] = -1
    return ops.reshape(mask, shape)

"""The one mask constraint, and the weights it masks.

A `MaskedWeight` is a weight of a wrapped layer and a mask on it: entry-wise (weight
pruning: the mask has the weight's shape), or one entry per channel along an axis
(channel pruning: each channel `repeat` entries wide). `KeepPruned` is the variable
constraint `w -> inner(w) * masks` that keeps the pruned entries at zero after every
optimizer step: one per weight, holding every mask on it (a weight masked along two
channel axes has two), set by `keep_pruned`.

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

    `role` names the channel role the mask belongs to; a weight mask has none, and `axes` instead,
    the weight's `WeightAxes` (what its blocks and N:M groups run along). Not a tuple, so that a
    wrapper holding it does not track its variables as its own.
    """

    variable: keras.Variable
    mask: keras.Variable
    axis: int = None
    repeat: int = 1
    role: str = None
    axes: object = None

    def full_mask(self, mask=None, dtype=None):
        """`mask` (default the mask variable's value) shaped to multiply the weight, in `dtype` (the weight's)."""
        mask = ops.cast(self.mask.value if mask is None else mask, dtype or self.variable.dtype)
        if self.axis is None:
            return mask
        return broadcast_mask(mask, self.axis, self.repeat, len(self.variable.shape))

    def multiply_weight(self, mask=None):
        """Multiplies the weight in place by `mask` (default the mask variable's value), shaped to it."""
        self.variable.assign(ops.multiply(self.variable.value, self.full_mask(mask)))


def keep_pruned(masked):
    """Sets one `KeepPruned` on each weight of the `MaskedWeight`s `masked`, on top of its own constraint."""
    by_variable = {}
    for m in masked:
        by_variable.setdefault(id(m.variable), []).append(m)
    for on_one in by_variable.values():
        variable = on_one[0].variable
        variable.constraint = KeepPruned(tuple(on_one), variable.constraint)


class KeepPruned:
    """The variable constraint `w -> inner(w) * masks` that keeps pruned entries at zero after optimizer steps.

    `masked` are the `MaskedWeight`s of one weight; `inner` is the constraint the weight had.
    """

    # True while JAX's train step is traced (`stateless.masked_train_step`): the step's masks are arrays of
    # its state, which the optimizer's stateless scope does not hold, so they are applied after it instead.
    deferred = False

    def __init__(self, masked, inner=None):
        self.masked, self.inner = masked, inner

    def __call__(self, value):
        if self.inner is not None:
            value = self.inner(value)
        return value if self.deferred else self.apply_mask(value)

    def apply_mask(self, value):
        """`value` with the pruned entries zeroed, by the current values of the masks."""
        for m in self.masked:
            value = ops.multiply(value, m.full_mask(dtype=value.dtype))
        return value


def broadcast_mask(mask, axis, repeat, rank):
    """A per-channel mask shaped to multiply a weight whose `axis` holds `repeat` entries per channel."""
    if repeat > 1:
        mask = ops.repeat(mask, repeat)
    shape = [1] * rank
    shape[axis] = -1
    return ops.reshape(mask, shape)

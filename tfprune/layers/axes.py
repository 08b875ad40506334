"""`WeightAxes`: what each axis of a prunable weight means.

The registry describes every prunable weight once with it; block and N:M sparsity
tile its (input, output) view, and structured pruning follows its output axis.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class WeightAxes:
    """What each axis of a prunable weight means; block, N:M and structured pruning follow it.

    Attributes:
        input: axes contracted with the layer's input features (Dense rows, Conv `in`).
        output: axes that index the layer's output units or filters.
        depthwise: the channel axis of a depthwise kernel (channels pass through), or None.
        head: the attention-head axis of a MultiHeadAttention projection, or None.

    Example:

    >>> WeightAxes.of_shape((3, 3, 16, 32)).grouping  # a Conv2D kernel
    (2, 3)
    """

    input: tuple = ()
    output: tuple = ()
    depthwise: int = None
    head: int = None

    @classmethod
    def of_shape(cls, shape, transposed=False):
        """Axes of a kernel whose last two axes are (input, output), or (output, input) if `transposed`."""
        rank = len(shape)
        if rank < 2:
            return cls(output=tuple(range(rank)))
        first, last = rank - 2, rank - 1
        return cls(input=(last,), output=(first,)) if transposed else cls(input=(first,), output=(last,))

    @property
    def grouping(self):
        """(row, column) axes of the 2-D view that block and N:M sparsity tile; None for 1-D weights.

        Rows run along the input (or depthwise channel) axis: N:M groups n consecutive rows.
        """
        row = self.depthwise if self.depthwise is not None else (self.input[-1] if self.input else None)
        if row is None or not self.output:
            return None
        return row, self.output[-1]

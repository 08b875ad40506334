"""Channel labels: one integer per channel, joined when channels must stay aligned.

Each tensor's last (channel) axis carries an array of labels. A layer that
creates channels (a Dense's units) draws fresh labels; a layer that passes
channels through hands its input labels on; an element-wise merge joins the
labels of its inputs index by index. After the walk, the labels joined into one
set form a channel group: one channel seen from every weight that touches it.
A frozen label (a model input or output, or a layer the analysis keeps whole)
freezes the set it belongs to.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Channels:
    """What the analysis knows about the channel axis of one tensor.

    Attributes:
        labels: int array, the label of each channel.
        zero: bool array, True where the channel is exactly zero for every input.
        constant: float array, the value the channel holds at every position for every input where it is
            one (0 where `zero`; 0.5 for a zero channel through a sigmoid), NaN elsewhere. None: only the zeros.
    """

    labels: np.ndarray
    zero: np.ndarray
    constant: np.ndarray = None

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.zero = np.broadcast_to(np.asarray(self.zero, dtype=bool), self.labels.shape).copy()
        constant = np.nan if self.constant is None else np.asarray(self.constant, dtype=np.float64)
        self.constant = np.where(self.zero, 0.0, np.broadcast_to(constant, self.labels.shape))


class LabelSets:
    """A union-find over channel labels, with a frozen flag per set.

    Example:

    >>> sets = LabelSets()
    >>> a, b = sets.new(3), sets.new(3)
    >>> sets.join(a, b)
    >>> bool((sets.roots(a) == sets.roots(b)).all())
    True
    """

    def __init__(self):
        self._parent = []
        self._frozen = []

    def new(self, count, frozen=False):
        """`count` fresh labels, each in a set of its own."""
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
        self._frozen.extend([frozen] * count)
        return np.arange(start, start + count, dtype=np.int64)

    def _find(self, label):
        root = label
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[label] != root:  # path compression
            self._parent[label], label = root, self._parent[label]
        return root

    def join(self, first, second):
        """Joins `first[i]` with `second[i]` for every i (equal-length label arrays)."""
        for a, b in zip(first.tolist(), second.tolist()):
            root_a, root_b = self._find(a), self._find(b)
            if root_a != root_b:
                self._parent[root_b] = root_a
                self._frozen[root_a] = self._frozen[root_a] or self._frozen[root_b]

    def freeze(self, labels):
        """Marks the sets of `labels` as never to be removed."""
        for label in labels.tolist():
            self._frozen[self._find(label)] = True

    def roots(self, labels):
        """The set (its root label) of each label."""
        return np.fromiter((self._find(label) for label in labels.tolist()), dtype=np.int64, count=len(labels))

    def is_frozen(self, root):
        return self._frozen[self._find(root)]

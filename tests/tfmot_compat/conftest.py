"""tfmot's own pruning tests (v0.8.1) ported to Keras 3 + tfprune: see README.md here.

Every ported test runs. The ones below fail today and are marked strict xfail, so a fix
shows up as an unexpected pass and this list must shrink with it:

- DELIBERATE: tfprune differs on purpose (MIGRATING.md says how and why);
- OPEN: a difference still to fix (issue 7).
"""

import pytest

DELIBERATE = {
    "testPruneCheckpoints_CheckpointsNotSparse": "tfprune checkpoints are sparse; tfmot's were not (its bug #206)",
    "testPrunePretrainedModel_PreservesWeightObjects": "prune_low_magnitude copies the model; tfmot shares weights",
    "testPruneModelDoesNotWrapAlreadyWrappedLayer": "wrappers already in the model are copied, not shared",
    "testPruneModelValidLayersSuccessful": "layers are copied, not shared, so wrapper.layer is not the original",
    "testPruneScope_NeededForKerasModel": "tfprune classes are registered with Keras: no scope needed to load",
    "testPruneSubclassModel": "tfprune prunes subclassed models; tfmot refuses them",
    "testConv3DWeightNotPrunedWithSparsityMbyN": "N:M runs along the input axis of any kernel; tfmot skips rank 3/5",
    "testPrunePretrainedModel_RemovesOptimizer": "the copy is compiled like the original, as Keras 3 clones are",
    "testPruneThenLoadTFWeights_DifferentInferenceWithoutTraining": "a dense weights file does not fit a pruned "
    "model: Keras 3 raises where tfmot's TF checkpoint silently loaded nothing",
    "testPruneThenLoadTFWeights_DoesNotPreserveWeights": "same: the mismatched load raises instead of doing nothing",
}
OPEN = {}


def pytest_collection_modifyitems(config, items):
    # tf.test.TestCase's own `test_session` helper is not a test (it skips itself): leave it out of the counts.
    helpers = [item for item in items if item.name == "test_session"]
    if helpers:
        config.hook.pytest_deselected(items=helpers)
        items[:] = [item for item in items if item.name != "test_session"]
    for item in items:
        name = item.name
        for table, kind in ((DELIBERATE, "deliberate difference"), (OPEN, "open, issue 7")):
            if name in table:
                item.add_marker(pytest.mark.xfail(strict=True, reason=f"{kind}: {table[name]}"))

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
}
OPEN = {
    "testPrunePretrainedModel_RemovesOptimizer": "the copied model keeps no optimizer attribute check (Keras 3)",
    "testPruneThenLoadTFWeights_DifferentInferenceWithoutTraining": "weights of a dense model load into a pruned one",
    "testPruneThenLoadTFWeights_DoesNotPreserveWeights": "weights of a dense model load into a pruned one",
    "testMbyNSparsityPruning_SupportedLayersConv2D_not_multiple_4": "check of N:M padding on a 7-channel Conv2D",
    "testPruneCustomNonPrunableLayer": "a custom layer without prunable weights must be refused when unbuilt",
    "testPruneMiscObject": "tfmot's exact error message for non-Keras objects",
    "testPruneModelCustomNonPrunableLayerRaisesError": "an unbuilt custom layer in a Sequential must be refused",
    "testCustomLayerNonPrunable": "layer built outside a model via Input",
    "testCustomLayerPrunable": "layer built outside a model via Input",
    "testEmbedding": "Sequential.build after a wrapper given input_shape (Keras 3)",
    "testCollectPrunableLayers": "Sequential.build after a wrapper given input_shape (Keras 3)",
    "testPruneModel": "get_config round trip of a Sequential of wrappers",
}


def pytest_collection_modifyitems(items):
    for item in items:
        name = item.name
        for table, kind in ((DELIBERATE, "deliberate difference"), (OPEN, "open, issue 7")):
            if name in table:
                item.add_marker(pytest.mark.xfail(strict=True, reason=f"{kind}: {table[name]}"))

# Ported from tensorflow/model-optimization v0.8.1 (Apache-2.0), see README.md here.
"""Distributed pruning test."""

import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests.tfmot_compat import test_utils as keras_test_utils
import keras
import tfprune as prune
import tfprune as pruning_callbacks
import tfprune as pruning_schedule
from tests.tfmot_compat import test_utils


def _distribution_strategies():
  return [
      tf.distribute.experimental.MultiWorkerMirroredStrategy(),
      tf.distribute.MirroredStrategy(),
      # TODO(pulkitb): Add parameter_server
      # tf.distribute.experimental.ParameterServerStrategy once ready in TF2.
      tf.distribute.OneDeviceStrategy('/cpu:0'),
  ]


class PruneDistributedTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super(PruneDistributedTest, self).setUp()
    self.params = {
        'pruning_schedule': pruning_schedule.ConstantSparsity(0.5, 0, -1, 1),
        'block_size': (1, 1),
        'block_pooling_type': 'AVG',
    }

  @parameterized.parameters(_distribution_strategies())
  def testPrunesSimpleDenseModel(self, distribution):
    with distribution.scope():
      model = prune.prune_low_magnitude(
          keras_test_utils.build_simple_dense_model(), **self.params
      )
      model.compile(
          loss='categorical_crossentropy', optimizer='sgd', metrics=['accuracy']
      )

    # Model hasn't been trained yet. Sparsity 0.0
    test_utils.assert_model_sparsity(self, 0.0, model)

    # Simple unpruned model. No sparsity.
    model.fit(
        np.random.rand(20, 10),
        keras.utils.to_categorical(np.random.randint(5, size=(20, 1)), 5),
        epochs=2,
        callbacks=[pruning_callbacks.UpdatePruningStep()],
        batch_size=20,
    )
    model.predict(np.random.rand(20, 10))
    test_utils.assert_model_sparsity(self, 0.5, model)

    _, keras_file = tempfile.mkstemp('.keras')
    keras.models.save_model(model, keras_file)

    with prune.prune_scope():
      loaded_model = keras.models.load_model(keras_file)

    test_utils.assert_model_sparsity(self, 0.5, loaded_model)

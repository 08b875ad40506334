# Ported from tensorflow/model-optimization v0.8.1 (Apache-2.0): the helpers of
# python/core/keras/test_utils.py and python/core/sparsity/keras/test_utils.py that the
# ported pruning tests use. Translations: tf.keras -> keras, tfmot modules -> tfprune,
# `wrapper.layer.get_prunable_weights()` -> `wrapper.pruned_weights`, `.h5` models -> `.keras`.
"""Test utility to generate models for testing."""

import tempfile

import keras
import numpy as np

import tfprune as prune
import tfprune as pruning_wrapper

l = keras.layers


class ModelCompare(object):
  """Mixin with helper functions for model comparison (trainable weights only)."""

  def _assert_weights_same_objects(self, model1, model2):
    self.assertEqual(
        len(model1.trainable_weights), len(model2.trainable_weights))
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights):
      self.assertEqual(id(w1), id(w2))

  def _assert_weights_different_objects(self, model1, model2):
    self.assertEqual(
        len(model1.trainable_weights), len(model2.trainable_weights))
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights):
      self.assertNotEqual(id(w1), id(w2))

  def _assert_weights_same_values(self, model1, model2):
    self.assertEqual(
        len(model1.trainable_weights), len(model2.trainable_weights))

    model1_weights = [keras.ops.convert_to_numpy(w) for w in model1.trainable_weights]
    model2_weights = [keras.ops.convert_to_numpy(w) for w in model2.trainable_weights]
    for w1, w2 in zip(model1_weights, model2_weights):
      self.assertAllClose(w1, w2)

  def _assert_weights_different_values(self, model1, model2):
    self.assertEqual(
        len(model1.trainable_weights), len(model2.trainable_weights))

    model1_weights = [keras.ops.convert_to_numpy(w) for w in model1.trainable_weights]
    model2_weights = [keras.ops.convert_to_numpy(w) for w in model2.trainable_weights]
    for w1, w2 in zip(model1_weights, model2_weights):
      self.assertNotAllClose(w1, w2)


def build_simple_dense_model():
  return keras.Sequential([
      l.Dense(8, activation='relu', input_shape=(10,)),
      l.Dense(5, activation='softmax'),
  ])


def _build_mnist_layer_list():
  return [
      l.Conv2D(
          32, 5, padding='same', activation='relu', input_shape=(28, 28, 1)),
      l.MaxPooling2D((2, 2), (2, 2), padding='same'),
      l.BatchNormalization(),
      l.Conv2D(64, 5, padding='same', activation='relu'),
      l.MaxPooling2D((2, 2), (2, 2), padding='same'),
      l.Flatten(),
      l.Dense(1024, activation='relu'),
      l.Dropout(0.4),
      l.Dense(10, activation='softmax')
  ]


def _build_mnist_sequential_model():
  return keras.Sequential(_build_mnist_layer_list())


def _build_mnist_functional_model():
  inp = keras.Input(shape=(28, 28, 1))
  x = l.Conv2D(32, 5, padding='same', activation='relu')(inp)
  x = l.MaxPooling2D((2, 2), (2, 2), padding='same')(x)
  x = l.BatchNormalization()(x)
  x = l.Conv2D(64, 5, padding='same', activation='relu')(x)
  x = l.MaxPooling2D((2, 2), (2, 2), padding='same')(x)
  x = l.Flatten()(x)
  x = l.Dense(1024, activation='relu')(x)
  x = l.Dropout(0.4)(x)
  out = l.Dense(10, activation='softmax')(x)

  return keras.models.Model([inp], [out])


def _build_mnist_layerwise_pruned_model(pruning_params):
  if pruning_params is None:
    raise ValueError('pruning_params should be provided.')

  return keras.Sequential([
      prune.prune_low_magnitude(
          l.Conv2D(32, 5, padding='same', activation='relu'),
          input_shape=(28, 28, 1),
          **pruning_params),
      l.MaxPooling2D((2, 2), (2, 2), padding='same'),
      l.BatchNormalization(),
      prune.prune_low_magnitude(
          l.Conv2D(64, 5, padding='same', activation='relu'), **pruning_params),
      l.MaxPooling2D((2, 2), (2, 2), padding='same'),
      l.Flatten(),
      prune.prune_low_magnitude(
          l.Dense(1024, activation='relu'), **pruning_params),
      l.Dropout(0.4),
      prune.prune_low_magnitude(
          l.Dense(10, activation='softmax'), **pruning_params)
  ])


def build_mnist_model(model_type, pruning_params=None):
  return {
      'sequential': _build_mnist_sequential_model,
      'functional': _build_mnist_functional_model,
      'layer_list': _build_mnist_layer_list,
      'layer_wise': lambda: _build_mnist_layerwise_pruned_model(pruning_params),
  }[model_type]()


def model_type_keys():
  return ['sequential', 'functional', 'layer_list', 'layer_wise']


def _save_restore_keras_model(model):
  _, keras_file = tempfile.mkstemp('.keras')
  keras.models.save_model(model, keras_file)

  with prune.prune_scope():
    loaded_model = keras.models.load_model(keras_file)

  return loaded_model


def _save_restore_tf_model(model):
  # Keras 3 has no save_format='tf'; tfmot skips the tests that use it as well.
  raise NotImplementedError('TF SavedModel round trips of Keras models do not exist in Keras 3.')


def save_restore_fns():
  return [_save_restore_keras_model, _save_restore_tf_model]


# Assertion/Sparsity Verification functions.


def _get_sparsity(weights):
  return 1.0 - np.count_nonzero(weights) / float(weights.size)


def assert_model_sparsity(test_case, sparsity, model, rtol=1e-6, atol=1e-6):
  for layer in model.layers:
    if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
      for weight in layer.pruned_weights:
        test_case.assertAllClose(
            sparsity,
            _get_sparsity(keras.ops.convert_to_numpy(weight)),
            rtol=rtol,
            atol=atol,
        )


# Check if model does not have target sparsity.
def is_model_sparsity_not(sparsity, model):
  for layer in model.layers:
    if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
      for weight in layer.pruned_weights:
        if sparsity != _get_sparsity(keras.ops.convert_to_numpy(weight)):
          return True
  return False


def is_pruned_m_by_n(weights, m_by_n=(2, 4)):
  """NumPy version of tfmot's pruning_utils.is_pruned_m_by_n (last_channel='C_OUT').

  At most n - m non-zeros in every n consecutive input-channel values of a rank-2 or rank-4 kernel.
  """
  num_zeros, num_elem = m_by_n
  weights = keras.ops.convert_to_numpy(weights)
  if weights.ndim == 2:
    prepared = weights.T
  elif weights.ndim == 4:
    prepared = np.transpose(weights, (3, 0, 1, 2)).reshape(-1, weights.shape[2])
  else:
    raise ValueError(f'weight tensor with shape: {weights.shape} is not supported.')
  num_non_zeros = num_elem - num_zeros
  for row in prepared:
    for col in range(0, row.size, num_elem):
      if np.count_nonzero(row[col:col + num_elem]) > num_non_zeros:
        return False
  return True


def assert_model_sparsity_m_by_n(test_case, model, m_by_n=(2, 4)):
  for layer in model.layers:
    if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
      for weight in layer.pruned_weights:
        test_case.assertTrue(is_pruned_m_by_n(weight, m_by_n=m_by_n))


def list_to_named_parameters(param_name, options):
  """Convert list of options for parameter to input to @parameterized.named_parameters."""

  def name(s):
    return s if isinstance(s, str) else s.__name__

  return [{'testcase_name': name(key), param_name: key} for key in options]

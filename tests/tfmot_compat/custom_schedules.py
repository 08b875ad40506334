# Copied from tensorflow/model-optimization v0.8.1 (Apache-2.0), see README.md here.
"""Pruning schedules written for tfmot, as users write them, to run unchanged on tfprune.

- `StepIndependentConstantSparsity`: tfmot's `sparsity/keras/tools/sparsity_tooling.py`, verbatim;
- `TfmotPolynomialDecay`: tfmot's `PolynomialDecay` (`sparsity/keras/pruning_schedule.py`), verbatim but
  for its name: a user's copy to customise, using tfmot's helpers `_validate_step`, `_validate_sparsity`
  and `_should_prune_in_step`.

Translation: `pruning_schedule.PruningSchedule` -> `tfprune.PruningSchedule`. Neither calls the base
constructor; both return tensors.
"""

import tensorflow as tf

import tfprune as pruning_schedule


class StepIndependentConstantSparsity(pruning_schedule.PruningSchedule):
  """Pruning schedule with constant sparsity, applied at any step."""

  def __init__(self, target_sparsity):
    """Initializes a Pruning schedule with constant sparsity.

    Sparsity is applied at every step.

    Args:
      target_sparsity: Target sparsity as float, in [0, 1] interval.
    """
    self.target_sparsity = target_sparsity

  def __call__(self, step):
    return (True, tf.constant(self.target_sparsity, dtype=tf.float32))

  def get_config(self):
    return {
        'class_name': self.__class__.__name__,
        'config': {
            'target_sparsity': self.target_sparsity,
        }
    }


class TfmotPolynomialDecay(pruning_schedule.PruningSchedule):
  """Pruning Schedule with a PolynomialDecay function."""

  def __init__(self,
               initial_sparsity,
               final_sparsity,
               begin_step,
               end_step,
               power=3,
               frequency=100):
    """Initializes a Pruning schedule with a PolynomialDecay function.

    Pruning rate grows rapidly in the beginning from initial_sparsity, but then
    plateaus slowly to the target sparsity. The function applied is

    current_sparsity = final_sparsity + (initial_sparsity - final_sparsity)
          * (1 - (step - begin_step)/(end_step - begin_step)) ^ exponent

    which is a polynomial decay function. See
    [paper](https://arxiv.org/abs/1710.01878).

    Args:
      initial_sparsity: Sparsity (%) at which pruning begins.
      final_sparsity: Sparsity (%) at which pruning ends.
      begin_step: Step at which to begin pruning.
      end_step: Step at which to end pruning.
      power: Exponent to be used in the sparsity function.
      frequency: Only apply pruning every `frequency` steps.
    """

    self.initial_sparsity = initial_sparsity
    self.final_sparsity = final_sparsity
    self.power = power

    self.begin_step = begin_step
    self.end_step = end_step
    self.frequency = frequency

    self._validate_step(self.begin_step, self.end_step, self.frequency, False)
    self._validate_sparsity(initial_sparsity, 'initial_sparsity')
    self._validate_sparsity(final_sparsity, 'final_sparsity')

  def __call__(self, step):
    # TODO(tf-mot): consider switch to divide for 1.XX also.
    if hasattr(tf, 'div'):
      divide = tf.div
    else:
      divide = tf.math.divide

    # TODO(pulkitb): Replace function with tf.polynomial_decay
    with tf.name_scope('polynomial_decay_pruning_schedule'):
      p = tf.math.minimum(
          1.0,
          tf.math.maximum(
              0.0,
              divide(
                  tf.dtypes.cast(step - self.begin_step, tf.float32),
                  self.end_step - self.begin_step)))
      sparsity = tf.math.add(
          tf.math.multiply(self.initial_sparsity - self.final_sparsity,
                           tf.math.pow(1 - p, self.power)),
          self.final_sparsity,
          name='sparsity')

    return (self._should_prune_in_step(step, self.begin_step, self.end_step,
                                       self.frequency),
            sparsity)

  def get_config(self):
    return {
        'class_name': self.__class__.__name__,
        'config': {
            'initial_sparsity': self.initial_sparsity,
            'final_sparsity': self.final_sparsity,
            'power': self.power,
            'begin_step': self.begin_step,
            'end_step': self.end_step,
            'frequency': self.frequency
        }
    }

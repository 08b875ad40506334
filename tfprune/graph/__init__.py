"""What a Keras model holds and how to rebuild it: Keras compatibility, traversal, rebuilding, containers."""

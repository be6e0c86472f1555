"""What runs inside one trial: data, models, strategies, metrics and the training loop.

The public entry point is :func:`trainables.train.run`; this package never imports ``study``.
"""

"""Training: the loop and ``paddleseg train``, its hooks, EMA, checkpoints, seeded data loading and profiling.

Evaluation (``paddleseg val`` and its metrics) is the layer below, :mod:`paddle_psp.evaluation`.
"""

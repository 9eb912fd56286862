"""Weights: the zoo manifest (``zoo``; ``zoo_listing`` reads it without Paddle), the shipped configs by name
(``shipped_configs``), reading a ``.pdparams`` file (``pdparams``), the download cache (``hub``) and loading into a
layer (``state_dict``), in that dependency order; ``flags`` holds ``--config``/``--model_path`` and the ``download``
and ``models`` verbs' flags. No module here imports PaddleSeg when it is imported (tests/test_architecture.py)."""

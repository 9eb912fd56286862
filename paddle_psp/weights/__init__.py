"""Checkpoints: the zoo manifest (``zoo``), reading a ``.pdparams`` file (``pdparams``), the download cache
(``hub``) and loading into a layer (``state_dict``), in that dependency order."""

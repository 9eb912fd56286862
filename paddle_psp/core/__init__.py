"""Infrastructure with no knowledge of models or data: errors, logging, atomic files, CPU tuning, the flags verbs
share (:mod:`flags`), the import hook that registers the models when PaddleSeg is imported (:mod:`lazy`), small
helpers. No module here imports PaddleSeg when it is imported (tests/test_architecture.py)."""

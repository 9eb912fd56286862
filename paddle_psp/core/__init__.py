"""Infrastructure with no knowledge of models or data: errors, logging, atomic files, CPU tuning, small helpers."""

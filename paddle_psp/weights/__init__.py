"""Checkpoints: the zoo manifest (zoo), reading .pdparams files (pdparams), the download cache (hub), loading into layers (state_dict)."""

"""Configuration: composing conf/ with Hydra, checking a config before anything is built, and its _target_s."""

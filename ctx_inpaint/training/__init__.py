"""What a training run needs besides the model: callbacks, checkpointing, loggers, and the run itself."""

"""Engine work for the docks: the thread bridge (jobs, events as Qt signals), the training run
adapter over the engine's one orchestration, and applying a model to layers and files."""

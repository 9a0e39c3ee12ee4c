"""What the docks of one viewer share: the session (method, mode, config, layers, model, the job slot)
and the workspace settings. No widgets here."""

"""The docks and their parts: views of the session that start work through the workers."""

"""The napari face of denoise-studio, grouped by role.

- :mod:`.state`: the session the docks of a viewer share (an evented model with psygnal signals,
  no Qt), and where files go;
- :mod:`.workers`: engine work off the GUI thread (napari's ``thread_worker``), the adapter over
  the engine's one training run, and applying a model to layers and files;
- :mod:`.widgets`: the docks, views of the session that start work through the workers.

The engine (:mod:`denoise_studio.engine`) never imports Qt; the docks touch Qt only on the GUI thread.
"""

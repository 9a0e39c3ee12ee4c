"""The napari face of denoise-studio: one module per dock, plus the bridge to the engine.

The engine (:mod:`denoise_studio.engine`) never imports Qt. Everything here runs on the GUI thread,
except the engine calls that :mod:`.worker` hands to napari's ``thread_worker``.
"""

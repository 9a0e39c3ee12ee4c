"""napari-denoise-studio: self-supervised denoising for microscopy.

The engine (:mod:`denoise_studio.engine`) is pure Python + torch + numpy; the command line
(:mod:`denoise_studio.cli`) and the napari widgets are thin faces over it.
"""

__version__ = "0.1.0"

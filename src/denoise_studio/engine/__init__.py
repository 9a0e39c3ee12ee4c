"""The denoising engine: pure Python + torch + numpy. Never imports Qt or napari."""

"""Process Data on a whole folder, and test-time augmentation, clicked through the Results dock."""

from __future__ import annotations

import numpy as np
import tifffile
from qt_helpers import TINY, click, noisy_image, set_fields


def test_process_a_folder_of_images_with_tta(studio, qtbot, workspace, tmp_path, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    model = widget.session.model
    results = widget.results
    assert results.tta.isVisibleTo(results) and "8 flips/rotations" in results.tta.text()

    folder = tmp_path / "day 1"
    folder.mkdir()
    images = {f"cell_{i}.tif": noisy_image((40, 48), seed=i) for i in range(2)}
    for name, image in images.items():
        tifffile.imwrite(folder / name, image)
    (folder / "broken.tif").write_bytes(b"not a tiff")
    layers_before = len(viewer.layers)

    results.folder_edit.setText(str(folder))
    results.from_folder.setChecked(True)
    results.tta.setChecked(True)
    click(qtbot, results.process_button)
    out = workspace / "results" / model.name / "day 1"
    for name, image in images.items():
        written = tifffile.imread(out / name.replace(".tif", "_denoised.tif"))
        np.testing.assert_allclose(written, model.predict(image, tta=True), rtol=1e-5, atol=1e-4)
    status = results.process_status.text()
    assert "3 files: 2 written, 1 failed" in status and "broken.tif" in status and str(out) in status
    assert not (out / "broken_denoised.tif").exists()
    assert len(viewer.layers) == layers_before  # a folder's results stay on disk, not in the viewer
    assert results.progress.value() == results.progress.maximum()

    # Again: what exists is kept, never overwritten.
    stamp = (out / "cell_0_denoised.tif").stat().st_mtime_ns
    click(qtbot, results.process_button)
    assert "2 skipped (output exists)" in results.process_status.text()
    assert (out / "cell_0_denoised.tif").stat().st_mtime_ns == stamp

    results.folder_edit.setText(str(tmp_path / "nowhere"))
    assert not results.process()
    assert "no such folder" in results.process_status.text()


def test_export_to_the_bioimage_model_zoo_from_the_results_dock(studio, qtbot, workspace, tmp_path, synchronous):
    import zipfile

    import pytest

    pytest.importorskip("bioimageio.core", reason="BioImage Model Zoo export needs bioimageio.core")
    from denoise_studio._qt.widgets.bmz_dialog import BmzExportDialog

    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    results = widget.results
    assert results.bmz_button.isEnabled()
    dialog = BmzExportDialog(widget.session.model, ["noisy"], tmp_path)
    dialog.authors.setText("Ada Lovelace, Alan Turing")
    dialog.citation.setText("no doi here")
    try:
        dialog.request()
    except ValueError as err:
        assert "TEXT|DOI" in str(err)
    dialog.citation.setText("Me et al. 2026|10.1234/abcd")
    request = dialog.request()
    assert request.authors == ["Ada Lovelace", "Alan Turing"] and request.target.parent == tmp_path
    assert results.export_bmz(request)
    assert "bioimageio.core's test passed" in results.bmz_status.text()
    rdf = zipfile.ZipFile(request.target).read("rdf.yaml").decode()
    assert "Ada Lovelace" in rdf and "10.1234/abcd" in rdf
    assert not results.export_bmz(request)  # never over an existing file
    assert "already exists" in results.bmz_status.text()

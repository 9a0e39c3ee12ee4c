"""The state the docks of one viewer share: method, mode, the one config object, the data, the model.

Each dock is a view of this object. Registered as separate napari widgets, the docks of a viewer
find the same session through :func:`session_for`; the all-in-one widget passes it explicitly.
The session also owns the job slot that keeps to one engine job (training or processing) at a time.
"""

from __future__ import annotations

import datetime as _dt
import math
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from psygnal import Signal

from ... import api
from ...engine.axes import ImageMeta, Layout, layout_for, parse_axes
from ...engine.config import AutoStructConfig, DenoiseConfig, with_mode
from ...engine.data import check_layout_for_mode
from ...engine.events import ProgressEvent
from ...engine.io import InputError
from ...engine.model import TrainedModel
from ...engine.noise_model import NoiseModel
from ...engine.registry import METHODS, MODES, PRESET_LABELS, TARGET_METHODS, mode_label
from . import settings

if TYPE_CHECKING:
    import napari

    from ..workers.worker import EngineJob, Outcome

PRESET_NAMES = PRESET_LABELS

RunConfig = DenoiseConfig | AutoStructConfig

_sessions: weakref.WeakValueDictionary[int, Session] = weakref.WeakValueDictionary()


def real_viewer(viewer):
    """napari hands plugin widgets a public-only proxy; the session keys on the viewer behind it."""
    return getattr(viewer, "__wrapped__", viewer)


def session_for(viewer: napari.Viewer) -> Session:
    """The session of ``viewer``, created on first use and alive while a dock holds it."""
    viewer = real_viewer(viewer)
    session = _sessions.get(id(viewer))
    if session is None or session.viewer is not viewer:
        session = Session(viewer)
        _sessions[id(viewer)] = session
    return session


def build_config(method: str, mode: str, preset: str) -> RunConfig:
    return api.make_config(method, mode, preset)


def unique_layer_name(viewer: napari.Viewer, wanted: str) -> str:
    names = {layer.name for layer in viewer.layers}
    if wanted not in names:
        return wanted
    index = 2
    while f"{wanted} [{index}]" in names:
        index += 1
    return f"{wanted} [{index}]"


def _timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def full_resolution(layer):
    """A layer's pixels as the layer holds them (numpy, dask or zarr; a multiscale layer's full
    resolution), never read: only ``.shape`` and ``.dtype`` may be used on the GUI thread."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_shape(layer) -> tuple[int, ...]:
    return tuple(int(n) for n in full_resolution(layer).shape)


def read_pixels(data) -> np.ndarray:
    """``data`` as a numpy array: a lazy (dask, zarr) layer is read here, so call it in a worker thread."""
    return np.asarray(data)


def metadata_value(layer, key: str):
    """``layer.metadata[key]``, as a reader puts it, else ``layer.metadata["denoise_studio"][key]`` (ours)."""
    metadata = getattr(layer, "metadata", None)
    if not isinstance(metadata, Mapping):
        return None
    if metadata.get(key) is not None:
        return metadata[key]
    ours = metadata.get("denoise_studio")
    return ours.get(key) if isinstance(ours, Mapping) else None


def layer_axes(layer) -> str:
    """The axes a layer says it has (its metadata), else the axes guessed for its shape when they name
    every dimension ("YX", "ZYX"); "" when neither is known (4D data, a channels-last image): the user types them."""
    declared = metadata_value(layer, "axes")
    if isinstance(declared, str) and declared.strip():
        return declared.strip().upper()
    data = full_resolution(layer)
    try:
        guessed = layout_for(data.shape, data.dtype, None, name=layer.name)
    except InputError:
        return ""
    # A guess that dropped singleton dimensions ((1, Y, X) read as YX) is no axes string for the shape.
    return guessed.axes if len(guessed.axes) == len(data.shape) else ""


def describe_layout(layout: Layout) -> str:
    """What the status says of an image, e.g. "2 channels, 64×64" or "20 slices of 48×48"."""
    size = f"{layout.size('Y')}×{layout.size('X')}"
    parts = []
    if layout.samples > 1:
        only_time = "T" in layout.axes and "S" not in layout.axes
        parts.append(f"{layout.samples} {'time points' if only_time else 'images'}")
    if layout.channels > 1:
        parts.append(f"{layout.channels} channels")
    parts.append(size if layout.depth == 1 else f"{layout.depth} slices of {size}")
    return ", ".join(parts)


class Session:
    """The evented state of one viewer's docks (psygnal signals, no Qt: testable without a display)."""

    method_changed = Signal(str)
    mode_changed = Signal(str)
    #: The config object changed; the argument is the widget that changed it (or None).
    config_changed = Signal(object)
    data_changed = Signal()
    #: The axes of the chosen layer ("" = guessed from its shape) were set, by a layer choice or an edit.
    axes_changed = Signal(str)
    workflow_changed = Signal(str)
    #: True while a job runs or a training run waits at its review gate (see ``active``).
    busy_changed = Signal(bool)
    #: (noisy layer, [result layers]) of the latest result, for Open in Viewer.
    comparison_changed = Signal(object)
    model_changed = Signal(object)
    workspace_changed = Signal(object)
    #: A TrainingRun has started (the Mask Review dock follows its review gate).
    run_started = Signal(object)
    #: A message the docks show the user (e.g. which hand-set values a mode switch had to reset).
    notice = Signal(str)
    #: A request to bring a dock to the front ("method", "configure", "training", "review", "results").
    show_dock = Signal(str)
    #: The noise model used for assessments changed (a calibration was fitted or forgotten, or a new model).
    noise_model_changed = Signal(object)

    def __init__(self, viewer: napari.Viewer):
        self.viewer = viewer
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self.id = f"session-{_timestamp()}"
        self.workspace: Path = settings.default_workspace()
        self.method = "n2v"
        self.mode = "2d"
        self.preset = "fast"
        self.config: RunConfig = build_config(self.method, self.mode, self.preset)
        #: A message while the fields hold a combination the config refuses; Start waits for a fix.
        self.config_error: str | None = None
        self.workflow = "train"
        # The chosen layers are held by reference, so a renamed layer stays chosen; a deleted one is
        # forgotten, never silently replaced by another layer.
        self._source = None
        #: More layers to train on with the chosen one (held by reference, like it).
        self._extra: list = []
        #: The paired image of Noise2Noise / CARE (a second noisy, or a clean acquisition).
        self._target = None
        #: SBD: the clean images it trains on (held by reference), and whether the noise to simulate is
        #: the current model's noise model (else it is fitted on the chosen image layer at Start).
        self._clean: list = []
        self.noise_from_model = False
        #: The axes of the chosen input layer (and its target), e.g. "CYX"; "" = guessed from its shape
        #: (YX or ZYX). Set from the layer whenever another one is chosen; the user may edit it.
        self.axes = ""
        #: The name of a chosen input layer that was deleted (for the message), until another is chosen.
        self.lost_source: str | None = None
        self.model: TrainedModel | None = None
        #: A noise model fitted from calibration frames: the instrument's, so it outlives a model change.
        self.calibrated_noise: NoiseModel | None = None
        self.job: EngineJob | None = None
        self.job_kind = ""
        #: The training run in progress (owned by training_run.TrainingRun), across its review gate.
        self.training_run = None
        self._comparison: tuple[object, list[object]] | None = None
        self._training_ids: set[str] = set()
        #: Training docks showing this session; the run stops when the last one is closed.
        self._training_views = 0

    # -- method, mode, config -------------------------------------------------------------------
    def set_method(self, method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        if method == self.method:
            return
        self.method = method
        # A method brings its own architecture and masking defaults, so the fields restart from the preset.
        self.apply_preset(self.preset)
        self.method_changed.emit(method)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES or mode == self.mode:
            return
        self.mode = mode
        self.config, reset = with_mode(self.config, mode, self.preset)
        self.config_error = None  # the new config is a validated one
        if reset:
            fields = "; ".join(f"{path} ({why})" for path, why in reset)
            self.notice.emit(
                f"Switched to {mode_label(mode)}: these settings do not apply there and were reset: {fields}"
            )
        self.config_changed.emit(None)
        self.mode_changed.emit(mode)
        self.data_changed.emit()

    def apply_preset(self, preset: str) -> None:
        self.preset = preset
        self.config = build_config(self.method, self.mode, preset)
        self.config_error = None
        self.config_changed.emit(None)

    def set_config(self, config: RunConfig, source: object = None) -> None:
        """Replace the config with one built and validated from the fields."""
        self.config = config
        self.config_error = None
        self.config_changed.emit(source)

    def set_config_error(self, message: str | None) -> None:
        self.config_error = message

    # -- workflow and data ----------------------------------------------------------------------
    def set_workflow(self, workflow: str) -> None:
        if workflow != self.workflow:
            self.workflow = workflow
            self.workflow_changed.emit(workflow)

    def _find(self, name: str | None):
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _alive(self, layer) -> bool:
        return layer is not None and layer in self.viewer.layers

    @property
    def source_layer(self) -> str | None:
        """The chosen input layer's current name (None when none is chosen, or it was deleted)."""
        return self._source.name if self._alive(self._source) else None

    @property
    def target_layer(self) -> str | None:
        return self._target.name if self._alive(self._target) else None

    def source_layer_object(self):
        return self._source if self._alive(self._source) else None

    def set_source_layer(self, name: str | None) -> None:
        layer = self._find(name)
        chosen_another = layer is not self._source
        self._source = layer
        # The chosen layer is trained on anyway; ticked again later it would come back unasked.
        self._extra = [extra for extra in self._extra if extra is not layer]
        if layer is not None:
            self.lost_source = None
        if chosen_another:
            # Re-choosing the same layer keeps the user's edit; another layer brings its own axes.
            self.axes = layer_axes(layer) if layer is not None else ""
            self.axes_changed.emit(self.axes)
        self.data_changed.emit()

    @property
    def extra_layers(self) -> list[str]:
        """The other layers trained on with the chosen one (never the chosen one itself)."""
        return [layer.name for layer in self._extra if self._alive(layer) and layer is not self._source]

    def set_extra_layers(self, names: list[str]) -> None:
        """Train on these layers too (each with its own axes: its file's, or the guess)."""
        self._extra = [layer for layer in (self._find(name) for name in names) if layer is not None]
        self.data_changed.emit()

    @property
    def clean_layers(self) -> list[str]:
        """SBD: the clean layers it trains on (never the chosen noisy image itself)."""
        return [layer.name for layer in self._clean if self._alive(layer) and layer is not self._source]

    def set_clean_layers(self, names: list[str]) -> None:
        self._clean = [layer for layer in (self._find(name) for name in names) if layer is not None]
        self.data_changed.emit()

    def set_noise_from_model(self, use_model: bool) -> None:
        self.noise_from_model = use_model
        self.data_changed.emit()

    @property
    def simulated(self) -> bool:
        return METHODS[self.method].simulated

    def simulation_noise(self) -> NoiseModel | None:
        """SBD: the noise model to simulate when it is the current model's (None: fit it on the image)."""
        if not (self.simulated and self.noise_from_model):
            return None
        noise = self.model.noise_model if self.model is not None else None
        if noise is None:
            raise InputError("the current model has no noise model; fit the noise on the image layer instead")
        return noise

    def clean_training_data(self) -> list[tuple[str, object, str | None]]:
        """SBD: (name, array, axes) of every clean layer to train on, each checked like the image (cheap)."""
        if not self.simulated:
            return []
        if not self.clean_layers:
            raise InputError("choose the clean images SBD trains on (Simulation: clean layers)")
        for name in self.clean_layers:
            self._checked_layout(name)
        return [(name, self.layer_array(name), self.axes_for(name)) for name in self.clean_layers]

    def set_axes(self, axes: str) -> None:
        """The axes of the chosen layer as the user typed them ("" = guess); checked by the data status."""
        axes = axes.strip().upper()
        if axes == self.axes:
            return
        self.axes = axes
        self.axes_changed.emit(axes)
        self.data_changed.emit()

    def axes_for(self, name: str) -> str | None:
        """The axes a layer is denoised with: the field's for the chosen input layer, the layer's own
        (metadata, or the guess) for any other; None: guessed from the shape by the engine."""
        layer = self._layer(name)
        if layer is self.source_layer_object():
            return self.axes or None
        return layer_axes(layer) or None

    def layer_meta(self, name: str, axes: str | None) -> ImageMeta | None:
        """What a layer's result files carry beside its axes: the layer's scale and translate per axis
        (physical pixel sizes) and the channel names and units a reader put in its metadata. None
        without axes (the result is then a plain TIFF)."""
        if not axes:
            return None
        layer = self._layer(name)
        letters = parse_axes(axes, layer.ndim, name=f"layer {name!r}: axes")
        scale = [float(n) for n in layer.scale]
        translate = [float(n) for n in layer.translate]
        # napari's default scale of 1 says nothing of the pixel size, so only a set scale is written.
        physical = "TZYX"
        scaled = any(not math.isclose(n, 1.0) for axis, n in zip(letters, scale, strict=True) if axis in physical)
        units = metadata_value(layer, "units")
        names = metadata_value(layer, "channel_names")
        return ImageMeta(
            axes=letters,
            scales={a: n for a, n in zip(letters, scale, strict=True) if a in physical} if scaled else {},
            units={str(k): str(v) for k, v in units.items()} if isinstance(units, Mapping) else {},
            translation={a: n for a, n in zip(letters, translate, strict=True) if a in physical and n != 0},
            channel_names=tuple(str(n) for n in names) if isinstance(names, (list, tuple)) else (),
        )

    def set_target_layer(self, name: str | None) -> None:
        self._target = self._find(name)
        self.data_changed.emit()

    def _on_layer_removed(self, event) -> None:
        self.layer_removed(event.value)

    def layer_removed(self, layer) -> None:
        """A layer left the viewer: forget it if it was chosen (the docks then say so)."""
        changed = False
        if layer is self._source:
            self._source, self.lost_source, changed = None, layer.name, True
        if layer in self._extra:
            self._extra, changed = [extra for extra in self._extra if extra is not layer], True
        if layer in self._clean:
            self._clean, changed = [clean for clean in self._clean if clean is not layer], True
        if layer is self._target:
            self._target, changed = None, True
        if changed:
            self.data_changed.emit()
        if self._comparison is not None and (layer is self._comparison[0] or layer in self._comparison[1]):
            self.comparison_changed.emit(self.comparison)

    @property
    def needs_target_layer(self) -> bool:
        """The method trains on pairs and the target is not made by a filter."""
        config = self.config
        return (
            self.method in TARGET_METHODS
            and isinstance(config, DenoiseConfig)
            and config.supervised.target_from is None
        )

    def target_data(self):
        """(name, pixels) of the target layer when the method needs one (raises InputError when it is
        missing). The pixels are the layer's array, not yet read (see :meth:`training_data`)."""
        if not self.needs_target_layer:
            return None
        if not self.target_layer:
            raise InputError("choose a target layer: the paired image of the same field")
        if self.target_layer == self.source_layer:
            raise InputError("the target layer is the image layer itself; choose the paired image")
        return self.target_layer, self.layer_array(self.target_layer)

    def target_status(self) -> tuple[bool, str] | None:
        """(ready, message) for the target, None when the method takes none. Only the cheap checks run
        here (shape); the alignment is checked when training starts."""
        if self.method not in TARGET_METHODS or not isinstance(self.config, DenoiseConfig):
            return None
        if not self.needs_target_layer:
            return True, f"target made from the input with {self.config.supervised.target_from}"
        try:
            if not self.source_layer:
                raise InputError("choose an image layer to train on, or open a TIFF file")
            if not self.target_layer:
                raise InputError("choose a target layer: the paired image of the same field")
            if self.target_layer == self.source_layer:
                raise InputError("the target layer is the image layer itself; choose the paired image")
            name = self.target_layer
            shape, target_shape = self._checked_layout(self.source_layer).shape, self._checked_layout(name).shape
            if target_shape != shape:
                raise InputError(f"target {name}: shape {target_shape} differs from the input {shape}")
        except InputError as err:
            return False, str(err)
        return True, f"target {name}: same shape as the input; alignment is checked at Start"

    def image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _layer(self, name: str):
        if name not in self.viewer.layers:
            raise InputError(f"there is no layer named {name!r} any more")
        layer = self.viewer.layers[name]
        if getattr(layer, "rgb", False):
            raise InputError(f"{name}: is an RGB layer; convert it to a single channel first")
        return layer

    def layer_array(self, name: str):
        """The array of an image layer as it holds it (numpy, dask, zarr; a multiscale layer's full
        resolution), not read: safe on the GUI thread. Read it with :func:`read_pixels` in the worker."""
        return full_resolution(self._layer(name))

    def layer_data(self, name: str) -> np.ndarray:
        """The pixels of an image layer as a numpy array. Reads a lazy layer whole: worker threads only."""
        return read_pixels(self.layer_array(name))

    def _checked_layout(self, name: str) -> Layout:
        """The layout of a layer with the session's axes, checked for the current mode from its shape and
        type alone: this runs on the GUI thread at every edit, so it never reads pixels (the values are
        checked at Start, in the worker)."""
        data = self.layer_array(name)
        label = f"layer {name!r}"
        layout = layout_for(data.shape, data.dtype, self.axes_for(name), name=label)
        check_layout_for_mode(layout.canonical_shape[2:], data.dtype, self.mode, name=label)
        return layout

    def training_data(self):
        """(name, pixels) of the chosen layer, its layout checked for the current mode (raises InputError
        with a readable message). The pixels are the layer's array, not yet read: a lazy layer is read
        by the training job, never on the GUI thread."""
        if not self.source_layer:
            raise InputError("choose an image layer to train on, or open a TIFF file")
        self._checked_layout(self.source_layer)
        return self.source_layer, self.layer_array(self.source_layer)

    def extra_training_data(self) -> list[tuple[str, object, str | None]]:
        """(name, array, axes) of every other layer to train on, each checked like the chosen one
        (cheap: shape and type). A paired method takes one image and its target, so none then."""
        extra = self.extra_layers
        if self.simulated:
            return []  # SBD trains on its clean layers ('Also train on' is hidden for it)
        if extra and self.method in TARGET_METHODS:
            raise InputError(
                f"{METHODS[self.method].label} trains on one image and its target; clear 'Also train on' "
                "or choose a method that learns from noisy images alone"
            )
        for name in extra:
            self._checked_layout(name)
        return [(name, self.layer_array(name), self.axes_for(name)) for name in extra]

    def data_status(self) -> tuple[bool, str]:
        """(ready, message) for the chosen training data (cheap: shape and type only)."""
        if not self.source_layer:
            if self.lost_source:
                return False, f"the layer {self.lost_source!r} was deleted; choose another image layer"
            return False, "choose an image layer to train on, or open a TIFF file"
        try:
            layout = self._checked_layout(self.source_layer)
            self.extra_training_data()
            clean = self.clean_training_data()
            self.simulation_noise()
        except InputError as err:
            return False, str(err)
        if self.simulated:
            noise = "the current model's noise" if self.noise_from_model else "noise fitted on it"
            return True, (
                f"{self.source_layer}: {describe_layout(layout)}, to denoise; SBD trains on {len(clean)} clean "
                f"layer{'s' if len(clean) > 1 else ''} with {noise}"
            )
        more = f" (and {len(self.extra_layers)} more layer{'s' if len(self.extra_layers) > 1 else ''})"
        more = more if self.extra_layers else ""
        return True, f"{self.source_layer}{more}: {describe_layout(layout)}, ready for {mode_label(self.mode)} training"

    # -- models ---------------------------------------------------------------------------------
    def new_training_id(self, method: str | None = None) -> str:
        """A new run name: the time and the method (the session's unless given)."""
        base = f"{_timestamp()}-{method or self.method}"
        candidate, index = base, 2
        while candidate in self._training_ids:
            candidate, index = f"{base}-{index}", index + 1
        self._training_ids.add(candidate)
        return candidate

    def models_dir(self, training_id: str) -> Path:
        return settings.models_dir(self.workspace, self.id, training_id)

    def results_dir(self, training_id: str) -> Path:
        return settings.results_dir(self.workspace, training_id)

    def set_workspace(self, path: str | Path) -> None:
        self.workspace = Path(path).expanduser()
        self.workspace_changed.emit(self.workspace)

    @property
    def noise_model(self) -> NoiseModel | None:
        """The noise model assessments use: the calibration's when there is one, else the model's."""
        if self.calibrated_noise is not None:
            return self.calibrated_noise
        return self.model.noise_model if self.model is not None else None

    def set_calibrated_noise(self, noise: NoiseModel | None) -> None:
        self.calibrated_noise = noise
        self.noise_model_changed.emit(self.noise_model)

    def set_model(self, model: TrainedModel | None) -> None:
        self.model = model
        self.model_changed.emit(model)
        self.noise_model_changed.emit(self.noise_model)

    def import_model(self, path: str | Path, weights: str | Path | None = None) -> TrainedModel:
        """Load a run folder (or a config.json plus weights) and make it the session's model.

        Raises ModelFileError with a readable message when the files are not a usable model.
        """
        model = api.load_model(Path(path), weights)
        self.set_workflow("import")
        self.set_model(model)
        self.show_dock.emit("results")
        return model

    # -- the job slot -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """An engine job is running right now."""
        return self.job is not None and self.job.running

    @property
    def active(self) -> bool:
        """A job runs, or a training run is still open (e.g. waiting at the mask review)."""
        return self.busy or (self.training_run is not None and self.training_run.active)

    def notify_activity(self) -> None:
        self.busy_changed.emit(self.active)

    @property
    def comparison(self) -> tuple[str, list[str]] | None:
        """(noisy layer, [result layers]) of the latest result by their current names; None once the
        noisy layer or every result is gone."""
        if self._comparison is None:
            return None
        noisy, results = self._comparison
        alive = [layer.name for layer in results if self._alive(layer)]
        if not self._alive(noisy) or not alive:
            return None
        return noisy.name, alive

    def set_comparison(self, noisy: str, results: list[str]) -> None:
        found = [self._find(name) for name in results]
        self._comparison = (self._find(noisy), [layer for layer in found if layer is not None])
        self.comparison_changed.emit(self.comparison)

    def busy_reason(self, owner: object = None) -> str:
        """Why a new job cannot start now ("" when it can). ``owner`` is the training run asking, if any."""
        run = self.training_run
        if run is not None and run.active and owner is not run:
            return run.busy_reason()
        if self.busy:
            return f"{self.job_kind} is running; wait for it to finish or press Stop"
        return ""

    def run_job(
        self,
        job: EngineJob,
        kind: str,
        on_done: Callable[[Outcome], None],
        on_progress: Callable[[ProgressEvent], None] | None = None,
        owner: object = None,
    ) -> str:
        """Start ``job`` unless another one runs; returns "" or the reason it was refused.

        The slot is released before ``on_done`` runs, so a handler may start the next job at once.
        """
        reason = self.busy_reason(owner)
        if reason:
            return reason
        self.job = job
        self.job_kind = kind
        job.done.connect(lambda _outcome, finished=job: self._release(finished))
        job.done.connect(on_done)
        if on_progress is not None:
            job.progress.connect(on_progress)
        self.busy_changed.emit(True)
        job.start()
        return ""

    def _release(self, job: EngineJob) -> None:
        if self.job is job:
            self.job = None
            self.job_kind = ""
            self.busy_changed.emit(self.active)

    def attach_training_view(self, view) -> None:
        """Count ``view`` as a training dock of this session; when the last such dock is destroyed
        (its window closed), whatever runs is asked to stop, so no training goes on unseen."""
        self._training_views += 1
        view.destroyed.connect(self._training_view_closed)

    def _training_view_closed(self, _obj: object = None) -> None:
        self._training_views -= 1
        if self._training_views <= 0:
            self.stop_all()

    def stop_all(self) -> None:
        """Ask whatever runs to stop (used when the window closes)."""
        if self.job is not None:
            self.job.request_stop()
        if self.training_run is not None:
            # At the mask review no job runs: the run ends now, keeping its stage-1 model.
            self.training_run.request_stop()

"""The Qt bridge: engine events become signals on the GUI thread; failures become messages."""

from __future__ import annotations

import threading

import pytest
from qtpy.QtCore import QThread
from qtpy.QtWidgets import QApplication

from denoise_studio._qt.workers import worker
from denoise_studio._qt.workers.worker import EngineJob, describe_error, synchronous
from denoise_studio.engine.events import TrainingEvent
from denoise_studio.engine.io import InputError


def counting_call(callback, stop):
    """Emits three events from whatever thread runs it; reports that thread."""
    for index in range(3):
        callback(TrainingEvent("batch", batch=index + 1, batches=3, epochs=1, epoch=1))
    return threading.current_thread().name


@pytest.mark.parametrize("threaded", [False, True])
def test_progress_arrives_on_the_gui_thread(qtbot, threaded):
    worker.set_synchronous(not threaded)
    try:
        job = EngineJob("count", counting_call)
        seen, outcomes = [], []
        gui = QApplication.instance().thread()
        job.progress.connect(lambda event: seen.append((event.batch, QThread.currentThread() is gui)))
        job.done.connect(outcomes.append)
        with qtbot.waitSignal(job.done, timeout=10_000, raising=threaded):
            job.start()
    finally:
        worker.set_synchronous(None)
    assert seen == [(1, True), (2, True), (3, True)]
    assert outcomes[0].ok
    ran_in_main = outcomes[0].value == threading.main_thread().name
    assert ran_in_main is (not threaded)
    assert job.threaded is threaded and not job.running


def test_failures_become_outcomes_with_a_message(qtbot, synchronous):
    def failing(_callback, _stop):
        raise InputError("image: the image is constant")

    job = EngineJob("fail", failing)
    outcomes = []
    job.done.connect(outcomes.append)
    job.start()
    assert not outcomes[0].ok and outcomes[0].message == "image: the image is constant"
    assert describe_error(ZeroDivisionError("x")) == "ZeroDivisionError: x"


def test_environment_switch(monkeypatch):
    monkeypatch.setenv(worker.NOTHREADS_ENV, "1")
    assert synchronous()
    monkeypatch.setenv(worker.NOTHREADS_ENV, "0")
    assert not synchronous()
    worker.set_synchronous(True)
    try:
        assert synchronous()
    finally:
        worker.set_synchronous(None)


def test_stop_request_reaches_the_engine(qtbot, threaded):
    started = threading.Event()

    def waits_for_stop(_callback, stop):
        started.set()
        while not stop.requested:
            threading.Event().wait(0.01)
        return "stopped"

    job = EngineJob("wait", waits_for_stop)
    with qtbot.waitSignal(job.done, timeout=10_000) as blocker:
        job.start()
        qtbot.waitUntil(started.is_set, timeout=5_000)
        job.request_stop()
    assert blocker.args[0].value == "stopped"

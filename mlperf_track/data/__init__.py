"""Datasets: labelled image splits (``digits``, ``imagefolder:<path>``, ``torchvision:<Name>:<root>``) for
accuracy and calibration, or ``synthetic`` for performance only.

Entry points: :func:`mlperf_track.data.registry.load_dataset` and
:func:`~mlperf_track.data.registry.dataset_schemes`. Submodules are imported on use.
"""

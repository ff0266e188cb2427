"""Models: where they come from (torchvision names, ``tinycnn``, model files, MLflow URIs) and their heads.

Entry points: :func:`mlperf_track.models.registry.load_model`, :func:`~mlperf_track.models.registry.model_names`,
:func:`~mlperf_track.models.registry.register_model_source` and
:func:`mlperf_track.models.heads.replace_classifier`. Submodules are imported on use, so importing this
package stays cheap.
"""

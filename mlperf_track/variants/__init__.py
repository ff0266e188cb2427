"""Variants: named recipes that turn the baseline into a quantized, pruned or distilled model.

Use :func:`mlperf_track.variants.registry.get_variant` / ``resolve_variants``; the baseline itself is prepared
by :func:`mlperf_track.variants.baseline.prepare_baseline`. Recipe modules import their heavy dependencies
(torchao, torch-pruning, onnxruntime) only when they build.
"""

"""Device-dependent defaults, used wherever a user leaves a setting at ``auto``.

The CPU defaults are sized so that ``mlflow run . --env-manager local -P model=resnet50`` finishes in about
ten minutes on a 2-core machine; the CUDA defaults follow the usual GPU serving comparison (ResNet-50 at
224 px, batch 1/32/256, fp32 vs tf32 vs bf16).
"""

from __future__ import annotations

from typing import Any

from mlperf_track.spec import TimingConfig

#: Value meaning "pick for me" in MLproject parameters and CLI flags.
AUTO = "auto"

_CPU_DEFAULTS: dict[str, Any] = {
    "batch_sizes": (1, 8),
    "precisions": ("fp32",),
    "runtimes": ("eager", "onnxruntime"),
    "variants": ("all",),
    "image_size": 64,
    "epochs": None,  # auto: train the baseline until its holdout accuracy stops rising
    "dataset": "digits",
    "timing": TimingConfig(
        warmup_iters=3, warmup_s=0.2, min_iters=10, max_iters=2_000, max_time_s=2.0, target_rel_ci=0.02
    ),
}

_CUDA_DEFAULTS: dict[str, Any] = {
    "batch_sizes": (1, 32, 256),
    "precisions": ("fp32", "tf32", "bf16", "fp16"),
    "runtimes": ("eager", "compile"),
    "variants": ("all",),
    "image_size": 224,
    "epochs": None,  # auto: train the baseline until its holdout accuracy stops rising
    "dataset": "digits",
    "timing": TimingConfig(
        warmup_iters=10,
        warmup_s=1.0,
        min_iters=20,
        max_iters=10_000,
        min_time_s=1.0,
        max_time_s=10.0,
        target_rel_ci=0.01,
    ),
}


def auto_defaults(device: str) -> dict[str, Any]:
    """Defaults for a resolved device (``cpu`` or ``cuda``).

    Returns:
        A dict with the keys ``batch_sizes``, ``precisions``, ``runtimes``, ``variants``, ``image_size``,
        ``epochs`` (``None``: train the baseline to convergence), ``dataset`` and ``timing`` (a :class:`TimingConfig`).
    """
    return dict(_CUDA_DEFAULTS if device == "cuda" else _CPU_DEFAULTS)


def is_auto(value: object) -> bool:
    """Whether a user value means "use the default" (``auto``, empty or ``None``)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO))

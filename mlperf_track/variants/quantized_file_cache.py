"""The on-disk cache of the int8 recipes that calibrate an ONNX file (``quantized_int8_ort``, ``quantized_int8_nncf``).

Calibration costs seconds to tens of seconds per run (resnet50 at 64 px on two cores: ORT 5 s, NNCF 7 s) and
gives the same file for the same input, so its output is kept under ``cache_dir/variants`` and reused, like the
retrained variants' weights (:mod:`~mlperf_track.variants.variant_cache`). The key is everything that changes
the output: the recipe, a digest of the float32 ONNX file's bytes (so any change of the baseline, export or
opset is a new key), the calibration images (dataset, split sizes, image size, count, seed) and the versions of
the quantization libraries. The file is written to a temporary name and moved into place, so concurrent runs
leave one whole file and never read half of one; a cached file ONNX cannot parse is logged and rebuilt. Cached
files are read, never modified.

The artifact then carries ``variant.cached`` and ``variant.cache_key`` (logged as ``artifact.variant.*``).
``quantized_int8_pt2e``, whose output is a graph module rather than a file, is cached by
:mod:`~mlperf_track.variants.pt2e_cache` with the same key (:func:`quantized_key`, its source being a digest of
the float32 module instead of the file).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mlperf_track.models.files import file_digest
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.variant_cache import FOLDER, VariantCache
from mlperf_track.variants.weights_cache import dataset_size, digest, entry_path

logger = logging.getLogger(__name__)

#: Bump when the key's parts or a recipe's quantization settings change meaning.
CACHE_VERSION = 1


def _versions(packages: Sequence[str]) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    return found


def quantized_key(recipe: str, source: str, context: VariantContext, samples: int, packages: Sequence[str]) -> str:
    """The key of ``recipe``'s output for ``source`` calibrated on ``samples`` images of ``context``'s data.

    Args:
        recipe: The recipe's name.
        source: A digest of what is quantized: the SHA-256 of the float32 ONNX file, or, for ``quantized_int8_pt2e``,
            of the float32 module's identity and state (:func:`~mlperf_track.variants.pt2e_cache.pt2e_key`).
        context: The variant context (its data, image size and seed).
        samples: Calibration images.
        packages: The libraries whose versions change the output.
    """
    data = context.data
    return digest(
        {
            "version": CACHE_VERSION,
            "recipe": recipe,
            "source_sha256": source,  # the name predates module sources; kept so existing entries keep their keys
            "calibration": {
                "dataset": data.name,
                "train": dataset_size(data.train),
                "holdout": dataset_size(data.holdout),
                "image_size": context.image_size,
                "samples": samples,
                "seed": context.seed,
            },
            "packages": _versions(packages),
        }
    )


def _readable(path: Path) -> bool:
    """Whether ONNX parses the file (a cache entry damaged outside this package is rebuilt, not run)."""
    import onnx

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, OSError, ...
        logger.warning("ignoring unreadable cached quantized model %s (%s); quantizing again", path, error)
        return False
    return True


def cached_quantization(
    recipe: str,
    fp32_path: Path,
    context: VariantContext,
    samples: int,
    *,
    packages: Sequence[str],
    quantize: Callable[[Path], Path],
    work_dir: Path,
) -> tuple[Path, dict[str, str]]:
    """The quantized file of ``recipe``: from the cache, else made by ``quantize(output_path)`` and cached.

    Args:
        recipe: The recipe's name.
        fp32_path: The float32 ONNX file it quantizes.
        context: The variant context (its ``cache_dir``; ``None`` caches nothing).
        samples: Calibration images.
        packages: The libraries whose versions change the output.
        quantize: Writes the quantized model to the path it is given and returns it.
        work_dir: Where to write when nothing is cached.

    Returns:
        The file, and the artifact tags ``variant.cached``/``variant.cache_key`` (none when caching is off).
    """
    if context.cache_dir is None:
        return quantize(work_dir / f"{recipe}.onnx"), {}
    key = quantized_key(recipe, file_digest(fp32_path), context, samples, packages)
    path = entry_path(context.cache_dir, FOLDER, recipe, key).with_suffix(".onnx")
    entry = VariantCache(recipe, key, path)
    if path.is_file() and _readable(path):
        logger.info("loaded variant %s from the cache: %s", recipe, path)
        return path, entry.tags(cached=True)
    output = quantize(work_dir / f"{recipe}.onnx")
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(output, partial)
        os.replace(partial, path)
    except OSError as error:  # a full disk or a read-only cache: the variant is still built
        logger.warning("could not cache variant %s in %s: %s", recipe, path, error)
        partial.unlink(missing_ok=True)
        return output, {}
    return path, entry.tags(cached=False)

"""Tests of mlperf_track.runtimes (a package, so file names may repeat those of other test folders)."""

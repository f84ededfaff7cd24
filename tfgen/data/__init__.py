"""Data sets as `tf.data` pipelines: `load(config.data, batch_size, ...)` is the one entry point."""

from tfgen.data.pipeline import BINARIZATIONS, Data, DataInfo, load
from tfgen.data.sources import MANUAL_DIR_ENV, SOURCES
from tfgen.data import generic  # Registers tfds:NAME and arrays. pylint: disable=unused-import

__all__ = ["BINARIZATIONS", "Data", "DataInfo", "MANUAL_DIR_ENV", "SOURCES", "load"]

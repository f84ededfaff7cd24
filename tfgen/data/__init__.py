"""Data sets as `tf.data` pipelines: `load(config.data, batch_size, ...)` is the one entry point."""

from tfgen.data.pipeline import BINARIZATIONS, Data, DataInfo, data_config, load
from tfgen.data.sources import MANUAL_DIR_ENV, SOURCES
# Registers the `folder` source (after sources, whose registry it joins).
from tfgen.data import folders  # pylint: disable=unused-import
from tfgen.data import generic  # Registers tfds:NAME and arrays. pylint: disable=unused-import

__all__ = ["BINARIZATIONS", "Data", "DataInfo", "MANUAL_DIR_ENV", "SOURCES", "data_config",
           "load"]

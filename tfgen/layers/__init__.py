"""Keras 3 layers shared by tfgen models; they return tensors, never distributions."""

from tfgen.layers.conv import ConvDecoder, ConvEncoder
from tfgen.layers.matnet import LatentModule, ResidualBranch
from tfgen.layers.mlp import MLP
from tfgen.layers.tracking import track_list

__all__ = ["ConvDecoder", "ConvEncoder", "LatentModule", "MLP", "ResidualBranch", "track_list"]

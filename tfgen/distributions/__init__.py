"""TFP distributions tfgen adds: spike-and-slab latents and discretized and categorical 8-bit pixels."""

from tfgen.distributions.discretized import (Categorical8Bit, Discretized8Bit,
                                             DiscretizedLogisticMixture)
from tfgen.distributions.likelihoods import LIKELIHOODS, PixelLikelihood
from tfgen.distributions.spike_and_slab import SpikeAndSlab

"""Classic texture features: local binary patterns (numba).

``lbp`` computes codes for an image or a batch, ``lbp_histogram`` the spatial-histogram
descriptor, ``add_lbp_to_h5`` / ``add_lbp_to_shards`` / ``lbp_image_folder`` add codes to
a face store, a shard folder or write PNGs (see docs/lbp.md).
"""
from .lbp import VARIANTS, code_dtype, dataset_name, lbp, lbp_histogram, n_bins
from .lbp_io import add_lbp_to_h5, add_lbp_to_shards, lbp_figure, lbp_image_folder

__all__ = ["VARIANTS", "lbp", "lbp_histogram", "n_bins", "code_dtype", "dataset_name",
           "add_lbp_to_h5", "add_lbp_to_shards", "lbp_image_folder", "lbp_figure"]

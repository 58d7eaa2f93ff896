"""The paper's figures from workdirs (PNG files, also logged to TensorBoard as images).

``accuracy`` (Figure 1), ``density`` (Figure A11), ``layer_density`` (Figure A10),
``mask_similarity`` (Figure A8), ``landscape`` (Figures 3 and 5), ``gradcam`` and ``saliency``
(Figure 6). ``launch.plot`` is the command line; every function here returns the PNG paths.
"""
from birds_tf.plots.attention import grad_cam, gradcam_figure, saliency, saliency_figure
from birds_tf.plots.curves import (accuracy_figure, density_figure, layer_density_figure,
                                   mask_similarity, mask_similarity_figure)
from birds_tf.plots.landscape import filter_normalized_direction, landscape_figure, loss_surface

__all__ = ["accuracy_figure", "density_figure", "layer_density_figure", "mask_similarity",
           "mask_similarity_figure", "loss_surface", "filter_normalized_direction",
           "landscape_figure", "grad_cam", "saliency", "gradcam_figure", "saliency_figure"]

"""Float64 reference of refnet.data.augment.augment_crops: numpy slicing, one crop at a time."""

import numpy as np


def augment_crops(images, source, top, left, flip, alpha, mean_image, eigval, eigvec, crop):
    """x[k] = flip(crop(images[source[k]] - mean_image)) + sum_e eigvec[:, e] * alpha[k, e] * eigval[e]."""
    out = np.empty((len(source), 3, crop, crop), dtype=np.float64)
    for k, b in enumerate(source):
        window = np.s_[top[k] : top[k] + crop, left[k] : left[k] + crop]
        pixels = images[b][window].astype(np.float64) - mean_image[window].astype(np.float64)
        if flip[k]:
            pixels = pixels[:, ::-1]
        shift = np.zeros(3)
        for e in range(3):
            shift += eigvec[:, e].astype(np.float64) * float(alpha[k, e]) * float(eigval[e])
        out[k] = (pixels + shift).transpose(2, 0, 1)
    return out

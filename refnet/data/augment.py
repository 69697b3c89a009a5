"""The paper's input pipeline (section 4.1) as one @njit pass from stored uint8 pixels to float32 NCHW.

For every output crop k (k = 0..K-1), with b = source[k], c = crop size, (t, l) = (top[k], left[k]):

    x[k, ch, i, j] = (images[b, t + i, l + s, ch] - mean_image[t + i, l + s, ch]) + shift[k, ch]
        where s = c - 1 - j if flip[k] else j
    shift[k, ch]   = sum_e eigvec[ch, e] * alpha[k, e] * eigval[e]          (PCA colour noise)

So the mean image is subtracted at the SOURCE position, before the flip: the output is
flip(crop(image - mean_image)) + shift, the flip mirrors image and mean together (Caffe does the
same). Pixels stay in 0-255 units: no division by a standard deviation.

Layouts (all C-contiguous):
    x          float32 (K, 3, c, c)   output, NCHW
    images     uint8   (B, S, S, 3)   stored HWC images, any order (`source` picks them)
    source     int64   (K,)           index into `images` of each output crop
    top, left  int64   (K,)           crop offsets, 0 <= top, left <= S - c
    flip       uint8   (K,)           1: mirror the crop horizontally
    alpha      float32 (K, 3)         colour-noise coefficients, zero for no noise
    mean_image float32 (S, S, 3)      train-split mean image, 0-255 units
    eigval     float32 (3,)           eigenvalues of the RGB pixel covariance, 0-255 units squared
    eigvec     float32 (3, 3)         eigvec[:, e] is the unit eigenvector of eigval[e]
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, nogil=True, fastmath=True)
def augment_crops(x, images, source, top, left, flip, alpha, mean_image, eigval, eigvec):
    crops, channels, c = x.shape[0], x.shape[1], x.shape[2]
    # one output crop per thread iteration: every element of x is written by exactly one thread
    for k in prange(crops):
        b, t, l = source[k], top[k], left[k]
        shift = np.empty(channels, dtype=np.float32)
        for ch in range(channels):
            total = np.float32(0.0)
            for e in range(channels):
                total += eigvec[ch, e] * (alpha[k, e] * eigval[e])
            shift[ch] = total
        for i in range(c):
            y = t + i
            for j in range(c):
                s = l + (c - 1 - j if flip[k] else j)
                for ch in range(channels):
                    value = np.float32(images[b, y, s, ch]) - mean_image[y, s, ch]
                    x[k, ch, i, j] = value + shift[ch]


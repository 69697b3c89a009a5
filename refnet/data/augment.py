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
    eigval     float32 (3,)           the eigenvalues as the noise formula takes them, in 0-255
                                      units (the reader passes stats.h5's eigval / 255: see
                                      refnet/data/shards.py on the paper's pixel scale)
    eigvec     float32 (3, 3)         eigvec[:, e] is the unit eigenvector of eigval[e]

`augment_crops_simple` is the formula as written, kept as the reference of `augment_crops`, which
walks one output row of each channel at a time with the flip hoisted out of the inner loop (about
1.8x faster) and gives bit-identical results (same float32 operations in the same order; no
fastmath: there is no reduction to reorder).
"""

import numpy as np
from numba import njit, prange


@njit(cache=True)
def colour_shift(alpha, eigval, eigvec):
    """shift[ch] = sum_e eigvec[ch, e] * alpha[e] * eigval[e] for one crop's alpha (3,)."""
    shift = np.empty(3, dtype=np.float32)
    for ch in range(3):
        total = np.float32(0.0)
        for e in range(3):
            total += eigvec[ch, e] * (alpha[e] * eigval[e])
        shift[ch] = total
    return shift


@njit(cache=True)
def augment_crops_simple(x, images, source, top, left, flip, alpha, mean_image, eigval, eigvec):
    crops, c = x.shape[0], x.shape[2]
    for k in range(crops):
        b, t, l = source[k], top[k], left[k]
        shift = colour_shift(alpha[k], eigval, eigvec)
        for ch in range(3):
            for i in range(c):
                for j in range(c):
                    s = l + (c - 1 - j if flip[k] else j)
                    x[k, ch, i, j] = (np.float32(images[b, t + i, s, ch]) - mean_image[t + i, s, ch]) + shift[ch]


@njit(cache=True, parallel=True, nogil=True)
def augment_crops(x, images, source, top, left, flip, alpha, mean_image, eigval, eigvec):
    crops, c = x.shape[0], x.shape[2]
    # one output crop per prange iteration: every element of x is written by exactly one thread
    for k in prange(crops):
        b, t, l = source[k], top[k], left[k]
        shift = colour_shift(alpha[k], eigval, eigvec)
        red, green, blue = shift[0], shift[1], shift[2]
        for i in range(c):
            pixels, mean = images[b, t + i], mean_image[t + i]  # (S, 3) source row
            out_r, out_g, out_b = x[k, 0, i], x[k, 1, i], x[k, 2, i]
            if flip[k]:  # walk the source forwards and write backwards: faster than the reverse
                for s in range(l, l + c):
                    j = l + c - 1 - s
                    out_r[j] = (np.float32(pixels[s, 0]) - mean[s, 0]) + red
                    out_g[j] = (np.float32(pixels[s, 1]) - mean[s, 1]) + green
                    out_b[j] = (np.float32(pixels[s, 2]) - mean[s, 2]) + blue
            else:
                for j in range(c):
                    s = l + j
                    out_r[j] = (np.float32(pixels[s, 0]) - mean[s, 0]) + red
                    out_g[j] = (np.float32(pixels[s, 1]) - mean[s, 1]) + green
                    out_b[j] = (np.float32(pixels[s, 2]) - mean[s, 2]) + blue

"""refnet.data: converted HDF5 shards read back as the paper's augmented batches.

    ds = refnet.data.ShardDataset(OUT, "train")
    for x, labels in ds.batches(128, train=True, seed=0, epoch=epoch):
        ...   # x float32 (128, 3, 227, 227), 0-255 units minus the mean image; labels int32

See refnet/data/shards.py for the conventions and refnet/data/augment.py for the kernel.
"""

from .manifest import FORMAT_VERSION
from .shards import ShardDataset

__all__ = ["FORMAT_VERSION", "ShardDataset"]

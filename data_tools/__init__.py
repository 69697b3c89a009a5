"""data_tools: ImageNet-style image folders -> HDF5 shards (`refnet convert`) and their inspection
(`refnet inspect`).

    preprocess.py  load_image(path_or_file, size=256) -> uint8 (size, size, 3): the one
                   preprocessing path, shared with `refnet predict`
    labels.py      which source files become which labelled images; label files
    shards.py      the on-disk format (a contract with refnet.data): manifest, shard writer/checks
    stats.py       exact streaming pixel statistics of the train split -> stats.h5
    state.py       OUT/.convert bookkeeping: per-split options, per-shard sidecars for resuming
    parts.py       a conversion split across machines: `--part I/K` shares, `--merge`
    convert.py     `refnet convert`; inspect.py: `refnet inspect`
"""

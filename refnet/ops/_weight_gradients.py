"""The output side shared by the backward of the layers with weights (linear, conv2d)."""

import numpy as np

from ._checks import check_same_backend, output_or_new


def gradient_outputs(out, need_dx, x, w, dy):
    """(dx, dw, db) to write: the arrays of `out` = (dx, dw, db) after checking them, or fresh ones.

    dx has x's shape and is None when need_dx is False; dw has w's shape; db is (w.shape[0],).
    """
    if not isinstance(need_dx, (bool, np.bool_)):
        raise ValueError(f"need_dx: expected a bool, got {need_dx!r}")
    if out is not None and not (isinstance(out, (tuple, list)) and len(out) == 3):
        raise ValueError(f"out: expected a tuple (dx, dw, db), got {type(out).__name__}")
    out_dx, out_dw, out_db = (None, None, None) if out is None else out
    if not need_dx and out_dx is not None:
        raise ValueError("out[0] (dx): expected None when need_dx is False, got an array")
    check_same_backend(x=x, w=w, dy=dy, out_dx=out_dx, out_dw=out_dw, out_db=out_db)
    dx = output_or_new("out[0] (dx)", out_dx, tuple(x.shape), np.float32, like=x) if need_dx else None
    dw = output_or_new("out[1] (dw)", out_dw, tuple(w.shape), np.float32, like=x)
    db = output_or_new("out[2] (db)", out_db, (w.shape[0],), np.float32, like=x)
    return dx, dw, db

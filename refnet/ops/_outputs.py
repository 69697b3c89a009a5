"""`out=` for ops that return two arrays: a pair, either entry None for "allocate it"."""


def output_pair(out, first, second):
    """(out_first, out_second) from out=None or a 2-tuple/list; ValueError naming `out` otherwise."""
    if out is None:
        return None, None
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError(f"out: expected a pair ({first}, {second}) or None, got {type(out).__name__}")
    return out[0], out[1]

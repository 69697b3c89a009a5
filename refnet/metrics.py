"""A run's metrics log, RUN_DIR/metrics.jsonl, as the trainer writes it (one JSON object per line,
"kind" "step" or "epoch"); read back by the trainer on resume and by `refnet plot`."""

import json
import os


def read_metrics(run_dir) -> list:
    """The records of RUN_DIR/metrics.jsonl; a torn last line (a run killed mid-write) is ignored."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a directory written by `refnet train`?")
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records

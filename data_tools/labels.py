"""Which files of a source folder become which labelled images, and which are skipped and why.

Two layouts:
  class folders   SRC/<class>/.../<image>  (ImageNet train; val arranged the same way). The train
                  split's class list is the sorted names of its class folders (the Caffe/torchvision
                  convention), label = position in that list. An empty class folder is still a class.
  flat + labels   SRC/<image> with a label file naming each image's class: a CSV `filename,class`
                  (an optional header row), or Kaggle's LOC_val_solution.csv (`ImageId,PredictionString`,
                  the class is the first token of PredictionString; ImageId has no extension). Rows are
                  looked up by name (path relative to SRC, else file name, else file name without
                  extension), never by position.

Counted files are those with an image extension (data_tools.preprocess.IMAGE_EXTENSIONS, any case);
anything else is ignored. Counted files that cannot be converted are skipped with a reason:
  hidden                  the file or a folder on its path starts with "." (e.g. macOS "._x.jpg"
                          resource forks, .ipynb_checkpoints) -- never image content
  outside class folders   a file directly in SRC in the class-folder layout
  no label                flat layout, the label file has no row for it
  not a regular file      a FIFO, socket or device with an image name
  file name not UTF-8     the name cannot be stored in the shards' utf-8 `paths`
"""

from __future__ import annotations

import csv
import os
from collections import Counter
import stat
from dataclasses import dataclass, field

from .preprocess import is_image_name
from .shards import DatasetError


@dataclass
class SplitSource:
    """One split's inputs: `items` [(relative path, label)] sorted by path; `skipped` [(relative path, reason)]."""

    root: str
    items: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    empty_classes: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.items) + len(self.skipped)


def _check_source_dir(root: str, what: str) -> None:
    if not os.path.exists(root):
        raise DatasetError(f"{what} {root!r} does not exist")
    if not os.path.isdir(root):
        raise DatasetError(f"{what} {root!r} is not a directory")


def _printable(rel: str) -> str:
    return rel.encode("utf-8", "backslashreplace").decode("utf-8")


def _walk_images(root: str):
    """Yield (relative path, reason or None) for every image-named entry under root, in sorted order."""
    seen_dirs = set()

    def walk(directory: str, rel_dir: str, hidden: bool):
        real = os.path.realpath(directory)
        if real in seen_dirs:  # a symlink loop
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise DatasetError(f"cannot list {directory!r}: {exc.strerror or exc}") from None
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            entry_hidden = hidden or entry.name.startswith(".")
            if entry.is_dir():
                yield from walk(entry.path, rel, entry_hidden)
            elif is_image_name(entry.name):
                yield rel, _file_problem(entry, rel, entry_hidden)

    yield from walk(root, "", False)


def _file_problem(entry: os.DirEntry, rel: str, hidden: bool):
    if hidden:
        return "hidden"
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "file name not UTF-8"
    try:
        if not stat.S_ISREG(entry.stat().st_mode):
            return "not a regular file"
    except OSError as exc:  # e.g. a dangling symlink
        return f"unreadable: {exc.strerror or exc}"
    return None


def find_classes(root: str) -> list[str]:
    """Sorted names of the (non-hidden) class folders of a train source directory."""
    _check_source_dir(root, "train source")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DatasetError(f"train source {root!r} has no class folders (expected {root}/<class>/<images>)")
    return classes


def read_class_list(path: str) -> list[str]:
    """Class names in label order from a file: the first word of each non-empty line (a wnid per
    line, Caffe's synsets.txt, or synset_words.txt's `wnid description`)."""
    try:
        with open(path, encoding="utf-8") as f:
            classes = [line.split()[0] for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"--classes {path!r}: cannot be read ({exc})") from None
    repeated = sorted(name for name, count in Counter(classes).items() if count > 1)
    if not classes or repeated:
        raise DatasetError(f"--classes {path!r}: " + (f"repeats {', '.join(repeated[:3])}" if repeated else "is empty"))
    return classes


def scan_class_folders(root: str, classes: list[str], what: str = "source") -> SplitSource:
    """Inputs of a SRC/<class>/<images> tree; a class folder not in `classes` is an error."""
    _check_source_dir(root, what)
    index = {name: i for i, name in enumerate(classes)}
    source = SplitSource(root)
    counts = dict.fromkeys(classes, 0)
    for rel, problem in _walk_images(root):
        if "/" not in rel:
            problem = problem or "outside class folders"
        if problem:
            source.skipped.append((_printable(rel), problem))
            continue
        class_name = rel.split("/", 1)[0]
        if class_name not in index:
            raise DatasetError(
                f"{what} {root!r}: class folder {class_name!r} is not one of the train split's "
                f"{len(classes)} classes (first: {', '.join(classes[:3])})")
        source.items.append((rel, index[class_name]))
        counts[class_name] += 1
    folders = {e.name for e in os.scandir(root) if e.is_dir()}
    source.empty_classes = [name for name in classes if name in folders and counts[name] == 0]
    _require_some(source, root, what)
    if not source.items and any(reason == "outside class folders" for _, reason in source.skipped):
        raise DatasetError(f"{what} {root!r} has its images directly inside, not in class folders "
                           "(for a flat folder give its label file with --val-labels)")
    return source


def _require_some(source: SplitSource, root: str, what: str) -> None:
    if source.total == 0:
        raise DatasetError(f"{what} {root!r} contains no image files (extensions: .jpg .jpeg .png ...)")


def read_label_file(path: str) -> dict[str, str]:
    """{file name as written in the label file: class name} from a `filename,class` CSV or Kaggle's
    LOC_val_solution.csv; DatasetError (with the line number) for anything malformed."""
    if not os.path.isfile(path):
        raise DatasetError(f"label file {path!r} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(number, row) for number, row in enumerate(csv.reader(f), start=1) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"label file {path!r} cannot be read: {exc}") from None
    if not rows:
        raise DatasetError(f"label file {path!r} is empty")
    kaggle = False
    first = [c.strip().lower() for c in rows[0][1]]
    if first and first[0] in ("filename", "file", "path", "image", "imageid", "name"):
        kaggle = len(first) > 1 and first[1] == "predictionstring"
        rows = rows[1:]
    labels: dict[str, str] = {}
    for number, row in rows:
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            expected = "ImageId,PredictionString" if kaggle else "filename,class"
            raise DatasetError(f"label file {path!r} line {number}: expected '{expected}', got {','.join(row)!r}")
        name = row[0].strip()
        class_name = row[1].split()[0] if kaggle else row[1].strip()
        if labels.setdefault(name, class_name) != class_name:
            raise DatasetError(f"label file {path!r} line {number}: {name!r} labelled both "
                               f"{labels[name]!r} and {class_name!r}")
    return labels


def scan_labelled_folder(root: str, label_file: str, classes: list[str], what: str = "source") -> SplitSource:
    """Inputs of a flat folder whose classes come from `label_file` (see the module docstring)."""
    _check_source_dir(root, what)
    labels = read_label_file(label_file)
    index = {name: i for i, name in enumerate(classes)}
    source = SplitSource(root)
    for rel, problem in _walk_images(root):
        if problem:
            source.skipped.append((_printable(rel), problem))
            continue
        base = rel.rsplit("/", 1)[-1]
        class_name = labels.get(rel) or labels.get(base) or labels.get(os.path.splitext(base)[0])
        if class_name is None:
            source.skipped.append((rel, "no label"))
            continue
        if class_name not in index:
            raise DatasetError(
                f"label file {label_file!r}: {rel!r} has class {class_name!r}, which is not one of the train "
                f"split's {len(classes)} classes (first: {', '.join(classes[:3])})")
        source.items.append((rel, index[class_name]))
    _require_some(source, root, what)
    if not source.items and any(reason == "no label" for _, reason in source.skipped):
        raise DatasetError(f"label file {label_file!r} names none of the images in {root!r} "
                           "(wrong file, or the images are in class folders: then drop --val-labels)")
    return source

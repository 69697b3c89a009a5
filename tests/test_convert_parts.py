"""refnet convert --part I/K and --merge: K parts (one after another, at the same time, or in separate
directories copied together) merge into exactly the one-part dataset; a missing, mismatched or
damaged part is named in a clear error; bad --part values are refused."""

import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import data_fixtures as fx
from data_tools.convert import convert
from data_tools.parts import merge
from data_tools.shards import DatasetError, read_manifest, sha256_file
from data_tools.stats import STATS_KEYS, read_stats
from refnet.cli import main as refnet_main

SIZE = 16
OPTIONS = {"size": SIZE, "shard_size": 3, "workers": 1, "quiet": True}


def dataset_digests(out):
    """{file: sha256} of the dataset itself: shards, stats.h5, manifest.json (not the bookkeeping)."""
    return {os.path.basename(p): sha256_file(p) for p in glob.glob(os.path.join(out, "*")) if os.path.isfile(p)}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    train, val = str(root / "train"), str(root / "val")
    fx.make_class_tree(train, {"a": 7, "b": 6, "c": 6}, size=(40, 30))
    (root / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")  # skipped in a shard
    fx.make_flat_folder(str(root / "train" / "c" / ".hidden"), ["x.jpg"])  # skipped by the source scan
    fx.make_class_tree(val, {"a": 2, "c": 3}, size=(40, 30), seed=3)
    return train, val


@pytest.fixture(scope="module")
def one_part(sources, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("one") / "out")
    convert(out, train=sources[0], val=sources[1], **OPTIONS)
    return out


def convert_parts(out, sources, parts, **options):
    for part in range(parts):
        convert(out, train=sources[0], val=sources[1], part=f"{part}/{parts}", **{**OPTIONS, **options})


def test_two_parts_merge_into_the_one_part_dataset(sources, one_part, tmp_path):
    out = str(tmp_path / "out")
    records = convert(out, train=sources[0], val=sources[1], part="0/2", **OPTIONS)
    assert sorted(records) == ["train", "val"] and records["train"]["part"] == 0
    convert(out, train=sources[0], val=sources[1], part="1/2", **OPTIONS)
    assert not os.path.exists(os.path.join(out, "manifest.json")) and not os.path.exists(os.path.join(out, "stats.h5"))
    # Round robin: part 0 holds the even shards, part 1 the odd ones.
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "train-*.h5"))) == [
        f"train-{i:05d}.h5" for i in range(7)]

    manifest = merge(out, quiet=True)
    assert manifest == read_manifest(one_part) == read_manifest(out)
    assert manifest["splits"]["train"]["count"] == 19 and len(manifest["splits"]["train"]["skipped"]) == 2
    merged, whole = read_stats(os.path.join(out, "stats.h5")), read_stats(os.path.join(one_part, "stats.h5"))
    for key in STATS_KEYS:
        np.testing.assert_array_equal(merged[key], whole[key])
    assert merged["images"] == whole["images"] == 19
    assert dataset_digests(out) == dataset_digests(one_part)  # every shard, stats.h5, manifest.json

    merge(out, quiet=True)  # merging again is harmless
    assert dataset_digests(out) == dataset_digests(one_part)


def test_parts_in_separate_directories_copied_together(sources, one_part, tmp_path):
    merged = str(tmp_path / "merged")
    for part in range(3):  # 7 train shards as 3 + 2 + 2; part 2 owns no val shard
        part_out = str(tmp_path / f"part{part}")
        convert(part_out, train=sources[0], val=sources[1], part=(part, 3), **OPTIONS)
        shutil.copytree(part_out, merged, dirs_exist_ok=True)
    assert refnet_main(["convert", merged, "--merge", "--quiet"]) == 0
    assert dataset_digests(merged) == dataset_digests(one_part)


def test_parts_running_at_the_same_time_in_one_directory(sources, one_part, tmp_path):
    out = str(tmp_path / "shared")
    processes = [subprocess.Popen(
        [sys.executable, "-m", "data_tools.convert", out, "--train", sources[0], "--val", sources[1],
         "--size", str(SIZE), "--shard-size", "3", "--workers", "1", "--quiet", "--part", f"{part}/2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for part in range(2)]
    for process in processes:
        assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    assert refnet_main(["convert", out, "--merge", "--quiet"]) == 0
    assert dataset_digests(out) == dataset_digests(one_part)


def test_val_parts_after_a_one_part_train_split(sources, one_part, tmp_path):
    out = str(tmp_path / "out")
    convert(out, train=sources[0], **OPTIONS)
    for part in range(2):
        convert(out, val=sources[1], part=f"{part}/2", **OPTIONS)
    merge(out, quiet=True)
    assert dataset_digests(out) == dataset_digests(one_part)


def test_a_part_rerun_leaves_the_other_parts_unfinished_files_alone(sources, one_part, tmp_path, capsys):
    out = tmp_path / "out"
    convert_parts(str(out), sources, 2)
    # Part 0 killed while redoing shard 2, part 1 at work on shard 1 (its files must survive part 0's cleanup).
    (out / "train-00002.h5").unlink()
    (out / ".convert" / "train.part-0-of-2.json").unlink()
    in_flight = [out / "train-00002.h5.tmp", out / "train-00001.h5.tmp",
                 out / ".convert" / "train-00001.json.host-7.tmp"]
    for path in in_flight:
        path.write_bytes(b"half written")
    capsys.readouterr()
    convert(str(out), train=sources[0], val=sources[1], part="0/2", **OPTIONS)
    redone = next(shard["count"] for shard in read_manifest(one_part)["splits"]["train"]["shards"]
                  if shard["file"] == "train-00002.h5")
    assert re.search(rf"train part 0/2: \d+ converted \({redone} now,", capsys.readouterr().out)  # shard 2 only
    assert [path.exists() for path in in_flight] == [False, True, True]
    for path in in_flight[1:]:
        path.unlink()
    merge(str(out), quiet=True)
    assert dataset_digests(str(out)) == dataset_digests(one_part)


def test_merge_names_the_missing_part(sources, tmp_path, capsys):
    out = str(tmp_path / "out")
    convert(out, train=sources[0], part="1/2", **OPTIONS)
    with pytest.raises(DatasetError, match=r"train: part\(s\) 0/2 missing.*--part I/2"):
        merge(out, quiet=True)
    assert refnet_main(["convert", out, "--merge", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "part(s) 0/2 missing" in err and "Traceback" not in err
    assert not os.path.exists(os.path.join(out, "manifest.json")) and not os.path.exists(os.path.join(out, "stats.h5"))
    assert refnet_main(["inspect", out]) == 2
    assert "holds parts of a conversion split with --part" in capsys.readouterr().err


def test_damaged_part_record_is_named(sources, tmp_path):
    out = str(tmp_path / "out")
    convert_parts(out, sources, 2)
    (tmp_path / "out" / ".convert" / "val.part-1-of-2.json").write_text('{"split": "val"}')
    with pytest.raises(DatasetError, match="val: the record of part 1/2 is damaged or names another part"):
        merge(out, quiet=True)
    (tmp_path / "out" / ".convert" / "val.part-1-of-2.json").write_text('{"split": ')
    with pytest.raises(DatasetError, match=r"val.part-1-of-2.json cannot be read .*rerun that part"):
        merge(out, quiet=True)


def test_merge_without_parts_is_an_error(one_part, tmp_path):
    with pytest.raises(DatasetError, match="holds no finished part to merge"):
        merge(one_part, quiet=True)
    with pytest.raises(DatasetError, match="does not exist: nothing to merge"):
        merge(str(tmp_path / "nowhere"), quiet=True)


def test_another_splitting_supersedes_the_earlier_records_and_keeps_the_shards(sources, one_part, tmp_path, capsys):
    out = str(tmp_path / "out")
    convert_parts(out, sources, 2)
    capsys.readouterr()
    convert(out, train=sources[0], val=sources[1], part="0/3", **OPTIONS)
    assert re.search(r"train part 0/3: (\d+) converted \(0 now, \1 kept", capsys.readouterr().out)  # shards 0, 3, 6
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, ".convert", "train.part-*.json"))) == [
        "train.part-0-of-3.json"]
    with pytest.raises(DatasetError, match=r"part\(s\) 1/3, 2/3 missing"):
        merge(out, quiet=True)
    for part in (1, 2):
        convert(out, train=sources[0], val=sources[1], part=f"{part}/3", **OPTIONS)
    merge(out, quiet=True)
    assert dataset_digests(out) == dataset_digests(one_part)


def test_other_options_in_a_shared_directory_are_refused_at_the_start(sources, tmp_path):
    out = str(tmp_path / "out")
    convert(out, train=sources[0], part="0/2", **OPTIONS)
    with pytest.raises(DatasetError, match=r"different options: train split \(seed 0 -> 1\)\. Remove it \(--overwrite "
                                           r"cannot be combined with --part\)"):
        convert(out, train=sources[0], part="1/2", seed=1, **OPTIONS)


def test_parts_with_other_options_copied_together_fail_to_merge(sources, tmp_path):
    merged = str(tmp_path / "merged")
    for part, seed in ((0, 0), (1, 1)):
        convert(str(tmp_path / f"part{part}"), train=sources[0], part=f"{part}/2", seed=seed, **OPTIONS)
        shutil.copytree(str(tmp_path / f"part{part}"), merged, dirs_exist_ok=True)
    with pytest.raises(DatasetError, match=r"train: part 1/2 was made with other options than part 0/2 "
                                           r"\(seed 0 -> 1\)"):
        merge(merged, quiet=True)
    assert not os.path.exists(os.path.join(merged, "manifest.json"))


def test_parts_of_different_splittings_copied_together_fail_to_merge(sources, tmp_path):
    merged = str(tmp_path / "merged")
    for part in ("0/2", "1/3"):
        part_out = str(tmp_path / part.replace("/", "of"))
        convert(part_out, train=sources[0], part=part, **OPTIONS)
        shutil.copytree(part_out, merged, dirs_exist_ok=True)
    with pytest.raises(DatasetError, match=r"parts of different splittings \(0/2, 1/3\)"):
        merge(merged, quiet=True)


def test_inputs_changed_between_parts_fail_to_merge(sources, tmp_path):
    train = str(tmp_path / "train")
    shutil.copytree(sources[0], train)
    out = str(tmp_path / "out")
    convert(out, train=train, part="0/2", **OPTIONS)
    fx.make_flat_folder(os.path.join(train, "a"), ["late_arrival.jpg"])
    convert(out, train=train, part="1/2", **OPTIONS)
    with pytest.raises(DatasetError, match="part 1/2 was planned from other inputs than part 0/2"):
        merge(out, quiet=True)


def test_damaged_shard_or_sums_are_named_at_merge(sources, tmp_path):
    out = str(tmp_path / "out")
    convert_parts(out, sources, 2)
    shard = tmp_path / "out" / "train-00003.h5"
    original = shard.read_bytes()
    shard.write_bytes(original[:-100] + bytes([original[-100] ^ 0xFF]) + original[-99:])
    with pytest.raises(DatasetError, match=r"train-00003.h5 \(part 1/2\) is missing, damaged.*rerun part 1/2"):
        merge(out, quiet=True)
    shard.write_bytes(original)
    os.remove(os.path.join(out, ".convert", "train.part-0-of-2.sums.h5"))
    with pytest.raises(DatasetError, match=r"pixel sums of part 0/2 .* missing or damaged"):
        merge(out, quiet=True)


BAD_PARTS = ["2/2", "-1/2", "0/0", "3", "a/b", "1/2/3", ""]


@pytest.mark.parametrize("part", BAD_PARTS)
def test_bad_part_values_are_refused(sources, tmp_path, capsys, part):
    with pytest.raises(DatasetError, match=f"^--part: expected i/k with 0 <= i < k, got '{part}'$"):
        convert(str(tmp_path / "out"), train=sources[0], part=part, **OPTIONS)
    rc = refnet_main(["convert", str(tmp_path / "out"), "--train", sources[0], f"--part={part}", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and f"--part: expected i/k with 0 <= i < k, got '{part}'" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "out")  # refused before anything is written


@pytest.mark.parametrize("args, message", [
    (["--merge", "--train", "TRAIN"], "--merge takes the options from the parts it merges: drop --train"),
    (["--merge", "--part", "0/2", "--seed", "3"], "drop --seed, --part"),
    (["--train", "TRAIN", "--part", "0/2", "--overwrite"], "--overwrite cannot be combined with --part"),
])
def test_merge_and_part_refuse_conflicting_options(sources, tmp_path, capsys, args, message):
    args = [sources[0] if a == "TRAIN" else a for a in args]
    assert refnet_main(["convert", str(tmp_path / "out"), "--quiet"] + args) == 2
    assert message in capsys.readouterr().err


def test_help_documents_parts(capsys):
    with pytest.raises(SystemExit):
        refnet_main(["convert", "--help"])
    text = capsys.readouterr().out
    assert "--part I/K" in text and "s % K == I" in text and "refnet convert OUT --merge" in text

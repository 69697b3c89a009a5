"""refnet convert: same inputs give the same bytes (any number of workers), a run killed with SIGKILL
(at an arbitrary moment, or at chosen points inside a shard's write) resumes to exactly the
uninterrupted result, and a different run never mixes into an OUT."""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import data_fixtures as fx
from data_tools.convert import convert
from data_tools.shards import DatasetError, read_manifest, sha256_file

SIZE = 32


def output_digests(out):
    """{file name: sha256} of everything a conversion leaves in OUT (shards, stats, manifest, bookkeeping)."""
    files = glob.glob(os.path.join(out, "*")) + glob.glob(os.path.join(out, ".convert", "*"))
    return {os.path.relpath(p, out): sha256_file(p) for p in files if os.path.isfile(p)}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("resume") / "src")
    fx.make_class_tree(src, {"a": 14, "b": 13, "c": 13}, size=(72, 54))
    (open(os.path.join(src, "b", "broken.jpg"), "wb")).write(b"\xff\xd8\xff\xe0 not really")
    return src


@pytest.fixture(scope="module")
def clean_run(source, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("clean") / "out")
    convert(out, train=source, size=SIZE, shard_size=4, workers=1, quiet=True)
    return out


def test_same_inputs_same_bytes(source, clean_run, tmp_path):
    out = str(tmp_path / "again")
    convert(out, train=source, size=SIZE, shard_size=4, workers=1, quiet=True)
    assert output_digests(out) == output_digests(clean_run)


def test_two_workers_write_the_same_bytes(source, clean_run, tmp_path):
    out = str(tmp_path / "parallel")
    convert(out, train=source, size=SIZE, shard_size=4, workers=2, quiet=True)
    assert output_digests(out) == output_digests(clean_run)


def test_seed_changes_the_order_only(source, clean_run, tmp_path):
    out = str(tmp_path / "seed1")
    convert(out, train=source, size=SIZE, shard_size=4, seed=1, workers=1, quiet=True)
    a, b = read_manifest(out)["splits"]["train"], read_manifest(clean_run)["splits"]["train"]
    assert a["count"] == b["count"] == 40 and a["skipped"] == b["skipped"]
    assert [s["sha256"] for s in a["shards"]] != [s["sha256"] for s in b["shards"]]


def child_pids(pid):
    """Processes whose parent is `pid` (Linux /proc)."""
    children = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.split("/")[2]))
    return children


def process_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_run_resumes_to_the_uninterrupted_result(source, clean_run, tmp_path, capsys, workers):
    out = str(tmp_path / "killed")
    command = [sys.executable, "-m", "data_tools.convert", out, "--train", source, "--size", str(SIZE),
               "--shard-size", "4", "--workers", str(workers), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    second_sidecar = os.path.join(out, ".convert", "train-00001.json")
    deadline = time.monotonic() + 60
    while not os.path.exists(second_sidecar) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    workers_left = child_pids(process.pid) if os.path.isdir("/proc") else []
    assert workers == 1 or len(workers_left) == workers or not os.path.isdir("/proc")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert all(process_gone(pid, 10) for pid in workers_left)  # the pool's workers do not outlive it
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert not os.path.exists(os.path.join(out, "manifest.json"))  # killed mid-run

    manifest = convert(out, train=source, size=SIZE, shard_size=4, workers=1, quiet=True)
    summary = capsys.readouterr().out
    kept = int(summary.split(" now, ")[1].split(" kept")[0])
    assert kept >= 2 and manifest["splits"]["train"]["count"] == 40
    assert not glob.glob(os.path.join(out, "*.tmp"))
    assert output_digests(out) == output_digests(clean_run)


# Where in the write of shard 2 (the third shard) the process dies; data_tools/shards.ShardWriter.
KILL_POINTS = {
    # two of its four images written and flushed into train-00002.h5.tmp
    "images half written": """
        real = shards.ShardWriter.add
        def hook(self, image, label, path):
            real(self, image, label, path)
            if self.path.endswith("train-00002.h5") and len(self.labels) == 2:
                self.file.flush()
                die()
        shards.ShardWriter.add = hook
    """,
    # the .tmp file complete and closed, not yet renamed into place
    "closed, not renamed": """
        real = shards.sha256_file
        def hook(path):
            if path.endswith("train-00002.h5.tmp"):
                die()
            return real(path)
        shards.sha256_file = hook
    """,
    # the shard renamed into place, its sidecar (the record that it is done) not yet written
    "renamed, no sidecar": """
        real = shards.ShardWriter.finish
        def hook(self):
            digest = real(self)
            if self.path.endswith("train-00002.h5"):
                die()
            return digest
        shards.ShardWriter.finish = hook
    """,
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_inside_a_shard_write_resumes_to_the_same_bytes(source, clean_run, tmp_path, point):
    out = str(tmp_path / "killed")
    script = textwrap.dedent("""
        import os, signal, sys
        from data_tools import shards
        def die():
            os.kill(os.getpid(), signal.SIGKILL)
    """) + textwrap.dedent(KILL_POINTS[point]) + textwrap.dedent(f"""
        from data_tools.convert import convert
        convert({out!r}, train={source!r}, size={SIZE}, shard_size=4, workers=1, quiet=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not os.path.exists(os.path.join(out, "manifest.json"))
    assert not os.path.exists(os.path.join(out, ".convert", "train-00002.json"))  # shard 2 is not recorded as done
    left = "train-00002.h5" if point == "renamed, no sidecar" else "train-00002.h5.tmp"
    assert os.path.isfile(os.path.join(out, left))

    convert(out, train=source, size=SIZE, shard_size=4, workers=1, quiet=True)
    assert not glob.glob(os.path.join(out, "*.tmp")) and not glob.glob(os.path.join(out, ".convert", "*.tmp"))
    assert output_digests(out) == output_digests(clean_run)


def test_damaged_or_half_written_shards_are_redone(source, clean_run, tmp_path, capsys):
    out = str(tmp_path / "damaged")
    convert(out, train=source, size=SIZE, shard_size=4, workers=1, quiet=True)
    with open(os.path.join(out, "train-00002.h5"), "r+b") as f:  # flip a byte inside
        f.seek(-100, os.SEEK_END)
        byte = f.read(1)
        f.seek(-100, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.remove(os.path.join(out, "train-00005.h5"))
    with open(os.path.join(out, "train-00006.h5.tmp"), "wb") as f:
        f.write(b"half a shard")
    with open(os.path.join(out, ".convert", "train-00006.json.tmp"), "w") as f:
        f.write('{"half": ')
    with open(os.path.join(out, "train-00099.h5"), "wb") as f:  # past the plan: removed
        f.write(b"stale")
    os.remove(os.path.join(out, "manifest.json"))
    capsys.readouterr()
    convert(out, train=source, size=SIZE, shard_size=4, workers=1, quiet=True)
    redone = sum(s["count"] for s in read_manifest(clean_run)["splits"]["train"]["shards"]
                 if s["file"] in ("train-00002.h5", "train-00005.h5"))
    assert f"({redone} now," in capsys.readouterr().out  # only those two shards converted again
    assert output_digests(out) == output_digests(clean_run)


def test_different_options_refused_unless_overwrite(source, clean_run, tmp_path, capsys):
    out = str(tmp_path / "opts")
    convert(out, train=source, size=SIZE, shard_size=4, workers=1, quiet=True)
    before = output_digests(out)
    with pytest.raises(DatasetError, match=r"different options: train split \(image_size 32 -> 40; shard_size 4 -> 1024\).*--overwrite"):
        convert(out, train=source, size=40, workers=1, quiet=True)
    from refnet.cli import main as refnet_main

    rc = refnet_main(["convert", out, "--train", source, "--size", str(SIZE), "--shard-size", "4", "--seed", "3",
                      "--workers", "1", "--quiet"])
    assert rc == 2 and "seed 0 -> 3" in capsys.readouterr().err
    assert output_digests(out) == before  # nothing touched

    manifest = convert(out, train=source, size=40, shard_size=8, workers=1, overwrite=True, quiet=True)
    assert manifest["image_size"] == 40 and len(manifest["splits"]["train"]["shards"]) == 6  # 41 inputs
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "train-*"))) == [
        f"train-{i:05d}.h5" for i in range(6)]


def test_val_alone_must_match_image_size(source, clean_run, tmp_path):
    val = str(tmp_path / "val")
    fx.make_class_tree(val, {"a": 1, "c": 1}, seed=4)
    with pytest.raises(DatasetError, match="--size 40 differs from the train split's image_size 32"):
        convert(clean_run, val=val, size=40, workers=1, quiet=True)


@pytest.mark.parametrize("compression", ["lzf", "gzip"])
def test_compression_changes_bytes_not_pixels(source, clean_run, tmp_path, compression):
    import h5py

    out = str(tmp_path / compression)
    manifest = convert(out, train=source, size=SIZE, shard_size=4, compression=compression, workers=1, quiet=True)
    for shard in manifest["splits"]["train"]["shards"]:
        with h5py.File(os.path.join(out, shard["file"]), "r") as f, \
                h5py.File(os.path.join(clean_run, shard["file"]), "r") as g:
            assert f["images"].compression == compression and g["images"].compression is None
            assert (f["images"][()] == g["images"][()]).all() and (f["labels"][()] == g["labels"][()]).all()

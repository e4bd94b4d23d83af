"""Sparse disks: a 1 GiB disk that holds a few MiB of data.  Copies must
be identical, cp must keep the holes, only the data may travel, and lseek
SEEK_DATA/SEEK_HOLE must describe the blob's page list the way ext4 would
describe a sparse file.  Without a page list (or with a broken one) the
copy must still be right, only slower."""

import errno
import json
import os
import shutil
import subprocess

import pytest

RP = "rg-prod/coll1/rp1"
MiB = 1 << 20
FOOTER = 512


def sparse_file(m):
    return m.path / RP / "vm1-sparse.vhd"


def expected_sparse(emulator, tmp_path):
    """image + footer, itself sparse so that it costs no disk space."""
    img = emulator.image_path("vm1-sparse")
    size = os.path.getsize(img)
    out = tmp_path / "expected-sparse.vhd"
    subprocess.run(["cp", "--sparse=always", img, str(out)], check=True)
    with open(out, "ab") as f:
        f.write(emulator.blob_bytes("vm1-sparse", size, FOOTER))
    return out


def host_extents(path):
    """Data extents of a local file by lseek, 512-aligned, as the blob
    service reports page ranges for it."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            h = os.lseek(fd, d, os.SEEK_HOLE)
            a, b = d // 512 * 512, min(size, -(-h // 512) * 512)
            if out and a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
            pos = h
    finally:
        os.close(fd)
    return out


def expected_extents(emulator):
    img = emulator.image_path("vm1-sparse")
    size = os.path.getsize(img)
    ext = host_extents(img)
    if ext and ext[-1][1] == size:
        ext[-1][1] = size + FOOTER  # the footer continues the last data
    else:
        ext.append([size, size + FOOTER])
    return ext


def walk(path):
    """Extents seen through SEEK_DATA/SEEK_HOLE, as cp and tar see them."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while True:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                assert e.errno == errno.ENXIO
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            assert d < h <= size
            out.append([d, h])
            pos = h
    finally:
        os.close(fd)
    return out, size


def data_bytes(ext):
    return sum(b - a for a, b in ext)


def du_bytes(path):
    return os.stat(path).st_blocks * 512


def test_seek_walk_matches_the_page_list(rpfs, emulator):
    m = rpfs()
    got, size = walk(sparse_file(m))
    exp = expected_extents(emulator)
    assert got == exp
    assert size == os.path.getsize(emulator.image_path("vm1-sparse")) + FOOTER
    # the generator's extents, when the host keeps the image sparse
    man = json.load(open(os.path.join(emulator.images, "manifest.json")))
    man_ext = man["images"]["sparse.img"]["extents"]
    if len(exp) == len(man_ext):
        assert [a for a, _ in exp] == [e["offset"] for e in man_ext]
    fd = os.open(sparse_file(m), os.O_RDONLY)
    try:
        # at and past the end: ENXIO for both, like ext4
        for whence in (os.SEEK_DATA, os.SEEK_HOLE):
            with pytest.raises(OSError) as ei:
                os.lseek(fd, size, whence)
            assert ei.value.errno == errno.ENXIO
        # inside a hole, SEEK_HOLE is the offset itself
        hole = exp[0][1]
        assert os.lseek(fd, hole + 4096, os.SEEK_HOLE) == hole + 4096
        # the footer is data and the file ends in data: SEEK_HOLE = EOF
        assert os.lseek(fd, size - 1, os.SEEK_DATA) == size - 1
        assert os.lseek(fd, size - FOOTER, os.SEEK_HOLE) == size
    finally:
        os.close(fd)


def test_st_blocks_reports_the_data_after_open(rpfs, emulator):
    m = rpfs()
    with open(sparse_file(m), "rb") as f:
        f.read(1)
    exp = data_bytes(expected_extents(emulator))
    st = os.stat(sparse_file(m))
    assert abs(st.st_blocks * 512 - exp) <= 4096, (st.st_blocks * 512, exp)


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_cp_keeps_the_holes_and_moves_only_data(rpfs, emulator, tmp_path,
                                                mode):
    m = rpfs()
    exp = expected_sparse(emulator, tmp_path)
    data = data_bytes(expected_extents(emulator))
    emulator.reset_stats()
    dst = tmp_path / "copy.vhd"
    subprocess.run(["cp", "--sparse=" + mode, str(sparse_file(m)), str(dst)],
                   check=True, timeout=300)
    assert subprocess.run(["cmp", str(dst), str(exp)]).returncode == 0
    # the copy is sparse: du close to the data, not to the 1 GiB
    assert du_bytes(dst) <= data + 2 * MiB, du_bytes(dst)
    # only the data went over the wire (whole chunks at most around it)
    moved = emulator.stats()["bytes"].get("blob_get", 0)
    assert data <= moved <= data + 16 * MiB, (moved, data)


def test_reading_a_hole_transfers_nothing(rpfs, emulator):
    m = rpfs("-o", "readahead=0")  # no read-ahead still in flight
    ext = expected_extents(emulator)
    hole = ext[0][1] + 10 * MiB
    assert hole + 8 * MiB < ext[1][0]
    with open(sparse_file(m), "rb") as f:
        f.read(1)
        emulator.reset_stats()
        f.seek(hole)
        assert f.read(8 * MiB) == bytes(8 * MiB)
    assert emulator.stats()["bytes"].get("blob_get", 0) == 0


def test_without_page_list_the_copy_is_still_right(rpfs, emulator, tmp_path):
    emulator.config(pagelist=False)
    m = rpfs("-o", "log_level=info")
    exp = expected_sparse(emulator, tmp_path)
    dst = tmp_path / "copy.vhd"
    subprocess.run(["cp", str(sparse_file(m)), str(dst)], check=True,
                   timeout=300)
    assert subprocess.run(["cmp", str(dst), str(exp)]).returncode == 0
    # every offset counts as data now
    got, size = walk(sparse_file(m))
    assert got == [[0, size]]
    assert "page ranges unavailable" in m.log_text()
    assert "InvalidQueryParameterValue" in m.log_text()


def test_page_map_off_by_option(rpfs, emulator):
    m = rpfs("-o", "pagelist=0")
    with open(sparse_file(m), "rb") as f:
        f.read(1)
    got, size = walk(sparse_file(m))
    assert got == [[0, size]]
    assert emulator.stats()["requests"].get("blob_pagelist", 0) == 0


def test_malformed_page_list_falls_back_to_data(rpfs, emulator, tmp_path):
    emulator.faults({"target": "blob", "method": "GET",
                     "path_contains": "comp=pagelist",
                     "action": "malformed", "count": -1})
    m = rpfs("-o", "log_level=info")
    exp = expected_sparse(emulator, tmp_path)
    dst = tmp_path / "copy.vhd"
    shutil.copyfile(sparse_file(m), dst)
    assert subprocess.run(["cmp", str(dst), str(exp)]).returncode == 0
    # Asked three times, then the whole blob counts as data.
    assert emulator.stats()["faults_injected"] == 3
    assert "page ranges unavailable" in m.log_text()


def test_one_garbled_page_list_is_asked_for_again(rpfs, emulator):
    emulator.faults({"target": "blob", "method": "GET",
                     "path_contains": "comp=pagelist",
                     "action": "malformed", "count": 1})
    m = rpfs("-o", "log_level=info")
    got, _ = walk(sparse_file(m))
    assert got == expected_extents(emulator)
    assert emulator.stats()["faults_injected"] == 1
    assert "page ranges unavailable" not in m.log_text()


def test_page_list_survives_throttling(rpfs, emulator):
    emulator.faults({"target": "blob", "method": "GET", "action": "status",
                     "status": 503, "code": "ServerBusy", "count": 2})
    m = rpfs()
    got, _ = walk(sparse_file(m))
    assert got == expected_extents(emulator)

"""What ships beside the driver: `make install` puts the binary, the man
page and the mount helper where a Debian user looks for them; the man page
renders cleanly and documents every option that `rpfs --help` offers; the
fstab example's lines are well-formed.
"""

import os
import pathlib
import re
import shutil
import subprocess

from build_paths import build_deb, build_dir, rpfs_bin

REPO = pathlib.Path(__file__).resolve().parent.parent
MAN = REPO / "docs" / "rpfs.1"


def test_make_install_places_binary_man_page_and_helper(tmp_path):
    stage = tmp_path / "stage"
    res = subprocess.run(["cmake", "--install", str(build_dir()),
                          "--prefix", "/usr"],
                         env=dict(os.environ, DESTDIR=str(stage)),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout
    binary = stage / "usr/bin/rpfs"
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert (stage / "usr/share/man/man1/rpfs.1").is_file()
    helper = stage / "usr/sbin/mount.fuse.rpfs"
    assert helper.is_file() and os.access(helper, os.X_OK)
    assert (stage / "usr/share/doc/rpfs/fstab.example").is_file()
    # The installed binary runs.
    out = subprocess.run([str(binary), "--version"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=10)
    assert out.returncode == 0 and "rpfs" in out.stdout


def test_man_page_renders_without_warnings():
    res = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=30)
    assert res.returncode == 0
    assert res.stderr == "", res.stderr


def man_text():
    res = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", str(MAN)],
                         stdout=subprocess.PIPE, text=True, timeout=30,
                         env=dict(os.environ, LC_ALL="C.UTF-8"))
    return res.stdout.replace("\u2010", "-")


def test_man_page_documents_every_option_of_help():
    helptext = subprocess.run([rpfs_bin(), "--help"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=10).stdout
    # rpfs's own options come before libfuse's ("FUSE options:"), which
    # fuse(8) documents.
    own = re.split(r"^FUSE options", helptext, flags=re.M | re.I)[0]
    opts = set(re.findall(r"--([a-z][a-z-]+)", own))
    opts |= set(re.findall(r"-o ([a-z_]+)", own))
    opts -= {"help", "version"}
    text = man_text()
    missing = sorted(o for o in opts
                     if o not in text and o.replace("-", "_") not in text)
    assert opts, "could not find any option in --help:\n" + helptext
    assert not missing, "man page lacks %s" % missing


def test_man_page_has_the_sections_a_user_looks_for():
    text = man_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                    "CREDENTIALS", "EXAMPLES", "ERRORS", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), section


def test_fstab_example_lines_are_well_formed():
    lines = [ln for ln in (REPO / "docs/fstab.example").read_text()
             .splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines, "no active fstab line in the example"
    for ln in lines:
        fields = ln.split()
        assert len(fields) == 6, ln
        _source, target, fstype, opts, _dump, _pass = fields
        assert target.startswith("/")
        assert fstype in ("fuse.rpfs", "fuse")
        assert "_netdev" in opts.split(",")
        # No secret in fstab: it is world-readable.
        assert "secret" not in opts.lower() and "sig=" not in opts


def test_mount_helper_is_valid_shell():
    sh = shutil.which("sh")
    res = subprocess.run([sh, "-n", str(REPO / "tools/mount.fuse.rpfs")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=10)
    assert res.returncode == 0, res.stdout


def test_deb_package_holds_binary_man_page_and_helper(tmp_path):
    deb, out = build_deb(tmp_path)
    assert deb, out
    debs = [deb]
    info = subprocess.run(["dpkg-deb", "-f", str(debs[0]), "Depends"],
                          stdout=subprocess.PIPE, text=True).stdout
    assert "fuse3" in info and "libcurl4" in info
    files = subprocess.run(["dpkg-deb", "-c", str(debs[0])],
                           stdout=subprocess.PIPE, text=True).stdout
    for path in ("./usr/bin/rpfs", "./usr/sbin/mount.fuse.rpfs",
                 "./usr/share/man/man1/rpfs.1"):
        assert re.search(r" %s$" % re.escape(path), files, re.M), path

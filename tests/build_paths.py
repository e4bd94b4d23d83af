"""Where the build under test lives, for every test file: the rpfs binary
($RPFS_BIN or build/rpfs), its build directory, the image cache that
survives runs ($RPFS_IMAGE_CACHE or build/images), and the .deb cpack
makes from that build."""

import os
import pathlib
import re
import subprocess

REPO = pathlib.Path(__file__).resolve().parent.parent


def rpfs_bin():
    """The rpfs binary under test: $RPFS_BIN or <repo>/build/rpfs."""
    return os.environ.get("RPFS_BIN") or str(REPO / "build" / "rpfs")


def build_dir():
    return pathlib.Path(rpfs_bin()).resolve().parent


def image_cache():
    return pathlib.Path(os.environ.get("RPFS_IMAGE_CACHE")
                        or REPO / "build" / "images")


def build_deb(out):
    """cpack's .deb of the build under test, made in out.  Returns
    (path or None, cpack's output)."""
    res = subprocess.run(["cpack", "-G", "DEB", "--config",
                          str(build_dir() / "CPackConfig.cmake"),
                          "-B", str(out)],
                         cwd=build_dir(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=300)
    debs = list(pathlib.Path(out).glob("rpfs_*.deb"))
    if res.returncode != 0 or len(debs) != 1:
        return None, res.stdout
    return debs[0], res.stdout


def project_version():
    """The version CMakeLists.txt declares."""
    text = (REPO / "CMakeLists.txt").read_text()
    return re.search(r"project\(rpfs VERSION ([0-9.]+)", text).group(1)

# shellcheck shell=bash
# Installs what rpfs needs to build, test and demo, only what is missing.
#
# Sourced by tests/run and demo/run (not executed): defines functions and
# changes nothing until one is called.  Targets a fresh Debian 12, run as
# root (CI) or by a user with sudo.  apt-get update runs only when a package
# is missing, so a machine that has everything installs nothing and needs no
# network.
#
#   rpfs_install_deps       Debian packages for build, tests, benches, demo
#   rpfs_install_node_deps  npm packages of tests/emulator (if it has a
#                           package.json), into tests/emulator/node_modules
#   rpfs_ensure_fuse        /dev/fuse present (modprobe fuse if not)

RPFS_DEB_PACKAGES=(
	# build
	build-essential cmake pkg-config git
	libfuse3-dev fuse3 libcurl4-openssl-dev libjson-c-dev libexpat1-dev libssl-dev
	# sanitizers, fuzzers, the format check
	clang clang-format libclang-rt-14-dev valgrind
	# tests and the emulator
	python3 python3-pytest python3-azure python3-requests
	qemu-utils e2fsprogs fdisk util-linux attr openssl curl
	# benchmarks
	nginx-light fio
	# the package test: a fresh Debian 12 root (test_package_fresh_debian.py)
	debootstrap
)

# Runs a command as root: directly when we are root, else through sudo.
rpfs_as_root()
{
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "rpfs: need root or sudo to run: $*" >&2
		return 1
	fi
}

rpfs_pkg_installed()
{
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null |
		grep -q 'install ok installed'
}

rpfs_install_deps()
{
	local missing=() p
	if ! command -v dpkg-query >/dev/null 2>&1; then
		echo "rpfs: not a Debian system (no dpkg-query);" \
		     "install by hand: ${RPFS_DEB_PACKAGES[*]}" >&2
		return 1
	fi
	for p in "${RPFS_DEB_PACKAGES[@]}" "$@"; do
		rpfs_pkg_installed "$p" || missing+=("$p")
	done
	# npm only when node itself is absent: NodeSource's nodejs bundles
	# npm and conflicts with Debian's npm package.
	if [ -n "${RPFS_NEED_NPM:-}" ] && ! command -v npm >/dev/null 2>&1; then
		missing+=(nodejs npm)
	fi
	if [ ${#missing[@]} -eq 0 ]; then
		echo "rpfs: all Debian packages present"
		return 0
	fi
	echo "rpfs: installing ${missing[*]}"
	rpfs_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		return 1
	rpfs_as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# npm packages that the emulator declares (Azurite, ...), installed into
# the project-local tests/emulator/node_modules; nothing global.
rpfs_install_node_deps()
{
	local dir=$1/tests/emulator
	[ -f "$dir/package.json" ] || return 0
	if [ -d "$dir/node_modules" ] &&
	   [ "$dir/node_modules" -nt "$dir/package.json" ]; then
		return 0
	fi
	echo "rpfs: npm packages in $dir"
	if [ -f "$dir/package-lock.json" ]; then
		# Exactly the versions of the lock file.
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
	else
		(cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
	fi && touch "$dir/node_modules"
}

rpfs_ensure_fuse()
{
	if [ ! -e /dev/fuse ]; then
		if ! command -v modprobe >/dev/null 2>&1 &&
		   [ ! -x /sbin/modprobe ]; then
			rpfs_install_deps kmod || true
		fi
		rpfs_as_root modprobe fuse 2>/dev/null ||
			rpfs_as_root /sbin/modprobe fuse 2>/dev/null || true
	fi
	if [ ! -e /dev/fuse ]; then
		echo "rpfs: /dev/fuse is missing and 'modprobe fuse' did not" \
		     "create it (in a container: run it with --device" \
		     "/dev/fuse --cap-add SYS_ADMIN)" >&2
		return 1
	fi
	if ! command -v fusermount3 >/dev/null 2>&1; then
		echo "rpfs: fusermount3 missing (package fuse3)" >&2
		return 1
	fi
}

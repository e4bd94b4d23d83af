#!/bin/bash
# tests/campaign/long.sh [COPIES] -- the long fault campaign, run by hand
# (docs/reliability.md records its figures).
#
# What it does: builds (once) a bigger image set in build/images-long --
# the sparse disk at RPFS_SPARSE_SIZE_MIB (default 8192 MiB) and a dense
# 2 GiB random disk (vm1-big, RPFS_BIG_MIB) added to vm1 in a scenario of
# its own -- then runs tests/mount/test_campaign.py with many copies of
# each (default 12 whole-disk copies: 8 GiB of data and 32 GiB of holes
# read through faults) with rpfs's default 4 MiB chunks, 1000 random
# preads and a five-minute memory loop.  About 25 minutes.  Every copy must be
# byte-identical to the blob or fail with an error; a silent difference
# fails the run.
#
# Env: RPFS_BIN (default build/rpfs), RPFS_SPARSE_SIZE_MIB, RPFS_BIG_MIB,
# RPFS_CAMPAIGN_FAULT_SCALE (default 1), RPFS_CAMPAIGN_CHUNK (default
# 4 MiB), RPFS_CAMPAIGN_PREADS (1000), RPFS_RSS_SECONDS (default 300).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COPIES=${1:-12}
IMAGES=$ROOT/build/images-long
BIG_MIB=${RPFS_BIG_MIB:-2048}
export RPFS_SPARSE_SIZE_MIB=${RPFS_SPARSE_SIZE_MIB:-8192}
export RPFS_BIN=${RPFS_BIN:-$ROOT/build/rpfs}

mkdir -p "$IMAGES"
sh "$ROOT/tests/emulator/build_images.sh" "$IMAGES"
if [ ! -f "$IMAGES/big.img" ] ||
	[ "$(stat -c %s "$IMAGES/big.img")" -ne $((BIG_MIB << 20)) ]; then
	echo "long.sh: writing a ${BIG_MIB} MiB random disk image"
	head -c $((BIG_MIB << 20)) /dev/urandom >"$IMAGES/big.img.tmp"
	mv "$IMAGES/big.img.tmp" "$IMAGES/big.img"
fi
SCEN=$IMAGES/scenario-long.json
/usr/bin/python3 - "$ROOT/tests/emulator/scenarios/default.json" \
	"$IMAGES/big.img" "$SCEN" <<'PY'
import json, sys
src, big, out = sys.argv[1:]
s = json.load(open(src))
for rg in s["resource_groups"]:
    for vm in rg.get("vms", []):
        if vm["name"] == "vm1":
            vm["disks"].append({"name": "vm1-big", "image": big, "lun": 2})
json.dump(s, open(out, "w"), indent=1)
PY

export RPFS_IMAGE_CACHE=$IMAGES
export RPFS_CAMPAIGN_SCENARIO=$SCEN
export RPFS_CAMPAIGN_DISKS=vm1-big,vm1-sparse,vm1-os
export RPFS_CAMPAIGN_COPIES=$COPIES
export RPFS_CAMPAIGN_PREADS=${RPFS_CAMPAIGN_PREADS:-1000}
export RPFS_CAMPAIGN_FAULT_SCALE=${RPFS_CAMPAIGN_FAULT_SCALE:-1}
export RPFS_CAMPAIGN_CHUNK=${RPFS_CAMPAIGN_CHUNK:-4194304}
export RPFS_RSS_SECONDS=${RPFS_RSS_SECONDS:-300}
export RPFS_RSS_SERIES=1
cd "$ROOT"
start=$SECONDS
/usr/bin/python3 -m pytest -v -s -p no:cacheprovider \
	tests/mount/test_campaign.py
echo "long.sh: done in $((SECONDS - start)) s"

#!/bin/bash
# tests/campaign/long.sh [COPIES] -- the long fault campaign, run by hand
# (docs/reliability.md records its figures).
#
# What it does: builds (once) a bigger image set in build/images-long --
# the sparse disk at RPFS_SPARSE_SIZE_MIB (default 8192 MiB) and a dense
# 2 GiB random disk (vm1-big, RPFS_BIG_MIB) added to vm1 in a scenario of
# its own -- then runs tests/mount/test_campaign.py with many copies of
# each (default 30 whole-disk copies: several GiB read through faults),
# more random preads and a ten-minute memory loop.  Every copy must be
# byte-identical to the blob or fail with an error; a silent difference
# fails the run.
#
# Env: RPFS_BIN (default build/rpfs), RPFS_SPARSE_SIZE_MIB, RPFS_BIG_MIB,
# RPFS_CAMPAIGN_FAULT_SCALE (default 2), RPFS_RSS_SECONDS (default 600).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COPIES=${1:-30}
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
export RPFS_CAMPAIGN_PREADS=${RPFS_CAMPAIGN_PREADS:-3000}
export RPFS_CAMPAIGN_FAULT_SCALE=${RPFS_CAMPAIGN_FAULT_SCALE:-2}
export RPFS_RSS_SECONDS=${RPFS_RSS_SECONDS:-600}
export RPFS_RSS_SERIES=1
cd "$ROOT"
start=$SECONDS
/usr/bin/python3 -m pytest -v -s -p no:cacheprovider \
	tests/mount/test_campaign.py
echo "long.sh: done in $((SECONDS - start)) s"

#!/bin/sh
# Measures blob download throughput of the emulator against nginx serving the
# same bytes over HTTPS with the same certificate, both on 127.0.0.1.
#
# Job: produce the two MB/s figures quoted in README.md. Trade-off: a single
# curl stream of one dense random file (page-cache hot after a warm-up), so it
# measures the server's per-stream ceiling, not disk speed.
# Usage: bench_blob.sh [WORKDIR] [SIZE_MIB]   (defaults: /tmp/rpfs-emu-bench, 2048)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
W=${1:-/tmp/rpfs-emu-bench}
MIB=${2:-2048}
mkdir -p "$W/img" "$W/state" "$W/nginx"
[ -f "$W/img/big.img" ] && [ "$(stat -c %s "$W/img/big.img")" -eq $((MIB * 1048576)) ] || \
    head -c $((MIB * 1048576)) /dev/urandom > "$W/img/big.img"
cat > "$W/scenario.json" <<JSON
{"resource_groups": [{"name": "rg-bench", "location": "westeurope",
  "vms": [{"name": "vmb", "disks": [{"name": "big", "image": "$W/img/big.img", "os": true}]}],
  "collections": [{"name": "c", "source_vm": "vmb", "restore_points": [{"name": "rp"}]}]}]}
JSON
NPORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/bin/python3 "$HERE/emulator.py" --state-dir "$W/state" --scenario "$W/scenario.json" --images "$W/img" \
    --blob-base "https://127.0.0.1:$NPORT" > "$W/emu.out" 2> "$W/emu.err" &
EPID=$!
NPID=""
cleanup() { kill "$EPID" 2>/dev/null || true; [ -n "$NPID" ] && kill "$NPID" 2>/dev/null || true; }
trap cleanup EXIT
i=0; until grep -q READY "$W/emu.out" 2>/dev/null; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done
cat > "$W/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $W/nginx/tmp;
  proxy_temp_path $W/nginx/tmp;
  fastcgi_temp_path $W/nginx/tmp;
  uwsgi_temp_path $W/nginx/tmp;
  scgi_temp_path $W/nginx/tmp;
  server {
    listen 127.0.0.1:$NPORT ssl;
    ssl_certificate $W/state/server.pem;
    ssl_certificate_key $W/state/server.key;
    location ~ ^/blob/[^/]+/(?<f>[^/]+)\$ { alias $W/img/\$f; default_type application/octet-stream; }
  }
}
CONF
mkdir -p "$W/nginx/tmp"
nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" &
NPID=$!
sleep 0.5
eval "$(/usr/bin/python3 - "$W/state/endpoint.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
print("URL=%s TOKEN=%s SUB=%s CA=%s" % (e["url"], e["token"], e["subscription"], e["ca"]))
PY
)"
RP="$URL/subscriptions/$SUB/resourceGroups/rg-bench/providers/Microsoft.Compute/restorePointCollections/c/restorePoints/rp"
DRP=$(curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$RP?api-version=2025-04-01" |
      /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["properties"]["sourceMetadata"]["storageProfile"]["osDisk"]["diskRestorePoint"]["id"])')
LOC=$(curl -s -D - -o /dev/null --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d '{"access":"Read","durationInSeconds":3600}' "$URL$DRP/beginGetAccess?api-version=2025-01-02" |
      tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
sleep 1
SAS_NGINX=$(curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$LOC" |
      /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["accessSAS"])')
SAS_EMU=$(printf '%s' "$SAS_NGINX" | sed "s#^https://127.0.0.1:$NPORT#$URL#")
cat "$W/img/big.img" > /dev/null
for name in emulator nginx emulator nginx emulator nginx; do
    if [ $name = emulator ]; then u=$SAS_EMU; else u=$SAS_NGINX; fi
    curl -s --cacert "$CA" -o /dev/null -w "$name %{size_download} bytes %{speed_download} B/s\n" "$u" |
        awk '{printf "%s %s bytes %.0f MB/s\n", $1, $2, $4/1e6}'
done

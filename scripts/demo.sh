#!/usr/bin/env bash
# A pod wired to a node's secondary NIC, for real: a "node" netns whose secondary NIC eth1 is a
# veth to a "switch" netns (172.16.0.1 plays the storage gateway), a pod netns, and one
# multinic conf: eth0 from Debian's bridge + host-local (standing in for the cluster's CNI),
# net1 from multinic's built-in macvlan + whereabouts IPAM + sbr on eth1, with a static route to
# a storage subnet (the Anthos guide's layout: replies leave through the interface they came in). ADD, CHECK and DEL run through
# libcni's driver (build/cnitool), as kubelet would; the pod's state is printed at each step.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MULTINIC_BIN:-$PWD/dist/multinic}
CNITOOL=$PWD/build/cnitool
id=demo-$$
node=mn-$id-node sw=mn-$id-sw pod=mn-$id-pod
work=$(mktemp -d /tmp/multinic-demo.XXXXXX)

cleanup() {
  for ns in "$pod" "$node" "$sw"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show_pod() {
  echo "-- interfaces";     ip -n "$pod" -br link
  echo "-- addresses";      ip -n "$pod" -br addr
  echo "-- routes (main)";  ip -n "$pod" route
  echo "-- rules";          ip -n "$pod" rule
  echo "-- routes (table 100, sbr's table for net1's address)"; ip -n "$pod" route show table 100
}

step "node netns $node: secondary NIC eth1 (veth to the switch, gateway 172.16.0.1)"
ip netns add "$sw"; ip netns add "$node"; ip netns add "$pod"
ip -n "$node" link set lo up
ip -n "$node" link add eth1 type veth peer name sw-eth1 netns "$sw"
ip -n "$sw" addr add 172.16.0.1/24 dev sw-eth1
ip -n "$sw" link set sw-eth1 up
ip -n "$node" link set eth1 up
ip -n "$node" -br link

mkdir -p "$work/bin" "$work/net.d"
for t in multinic macvlan whereabouts sbr; do ln -s "$BIN" "$work/bin/$t"; done
cat > "$work/net.d/00-multinic.conf" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "pods",
  "type": "multinic",
  "cniDir": "$work/cache",
  "logFile": "$work/multinic.log",
  "logLevel": "debug",
  "delegates": [
    { "cniVersion": "1.0.0", "name": "cluster", "plugins": [
        { "type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
          "ipam": { "type": "host-local", "subnet": "10.244.1.0/24", "dataDir": "$work/host-local" } } ] },
    { "cniVersion": "1.0.0", "name": "storage", "plugins": [
        { "type": "macvlan", "master": "eth1", "mode": "bridge", "mtu": 1400,
          "ipam": { "type": "whereabouts", "range": "172.16.0.0/24", "range_start": "172.16.0.10",
                    "gateway": "172.16.0.1", "data_dir": "$work/whereabouts",
                    "routes": [ { "dst": "192.168.100.0/24" } ] } },
        { "type": "sbr" } ] }
  ]
}
CONF
step "network config ($work/net.d/00-multinic.conf)"
cat "$work/net.d/00-multinic.conf"

cni() {
  ip netns exec "$node" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NETCONFPATH="$work/net.d" \
    CNI_PATH="$work/bin:/usr/lib/cni" CNI_CACHE_DIR="$work/libcni" CNI_CONTAINERID="$id" \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo-pod" \
    "$CNITOOL" "$1" pods "/run/netns/$pod"
}

step "ADD"
cni add
echo
show_pod
echo "-- ping the storage gateway from net1's address: the rule sends it out through net1"
ip netns exec "$pod" ping -c 1 -W 2 -I 172.16.0.10 172.16.0.1 | sed -n "2p"

step "CHECK"
cni check && echo "CHECK passed"

echo "-- the whereabouts pool on the node"
cat "$work"/whereabouts/ippools/* 2>/dev/null; echo

step "DEL"
cni del && echo "DEL passed"
show_pod
echo "-- the whereabouts pool after DEL"
cat "$work"/whereabouts/ippools/* 2>/dev/null; echo
step "done: the pod has only lo left; namespaces are removed on exit"

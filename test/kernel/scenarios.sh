#!/bin/sh
# The scenarios of `make test-kernel` (ipvlan, bridge VLANs), run by /init inside the VM. This script only acts
# and records: every plugin run (exit code, stdout) and every `ip -j` snapshot goes to the
# data port (ttyS1) as one line "S <scenario> <key> <value>", and the host-side test
# (test/integration/ipvlan.test.ts) parses and judges them with the same normaliser as the
# other integration tests.
#
# The VM's own namespace is the node: its NICs are dummies named as in the Anthos guide.
DATA=/dev/ttyS1
OURS=/opt/cni/bin
REF=/ref

emit() {
  # One line per value: newlines in JSON are only whitespace.
  printf 'S %s %s %s\n' "$1" "$2" "$(printf '%s' "$3" | tr '\n' ' ')" >"$DATA"
}

# ip in netns <name>, or in the VM's own namespace (the node) for "-"
ipin() {
  if [ "$1" = - ]; then shift; ip "$@"; else where=$1; shift; ip -n "$where" "$@"; fi
}

snap() { # <scenario> <prefix> <netns|->
  # The settled state: link-local DAD over (the reference returns before it, we after).
  n=0
  while [ -n "$(ipin "$3" -6 addr show tentative)" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  emit "$1" "$2.links" "$(ipin "$3" -j -d link show)"
  emit "$1" "$2.addrs" "$(ipin "$3" -j addr show)"
  emit "$1" "$2.routes4" "$(ipin "$3" -j -4 route show table all)"
  emit "$1" "$2.routes6" "$(ipin "$3" -j -6 route show table all)"
  emit "$1" "$2.rules4" "$(ipin "$3" -j -4 rule show)"
  emit "$1" "$2.rules6" "$(ipin "$3" -j -6 rule show)"
}

# A test hook of ours (MULTINIC_TEST_FAIL_STEP) for the next cni calls; empty: none.
FAILSTEP=

# cni <scenario> <key> <COMMAND> <pod> <ifname> <plugin exe> <CNI_PATH> <conf> [netns path]
cni() {
  netns=${9:-/run/netns/$4}
  out=$(printf '%s' "$8" | MULTINIC_TEST_FAIL_STEP=$FAILSTEP CNI_COMMAND=$3 CNI_CONTAINERID=$4 CNI_NETNS=$netns CNI_IFNAME=$5 CNI_PATH=$7 "$6" 2>/tmp/stderr)
  rc=$?
  emit "$1" "$2.rc" "$rc"
  emit "$1" "$2.out" "$out"
  emit "$1" "$2.err" "$(head -c 2000 /tmp/stderr)"
}

pod() { ip netns add "$1"; }

setup_node() {
  ip link add ens224 type dummy
  ip link add ens192 type dummy
  ip link set ens224 up
  ip link set ens192 up
  ip addr add 172.16.0.250/24 dev ens224
  emit node ens224.index "$(cat /sys/class/net/ens224/ifindex)"
  emit node ens192.index "$(cat /sys/class/net/ens192/ifindex)"
}

static_ipam() { # <cidr> [routes json]
  printf '{"type":"static","addresses":[{"address":"%s","gateway":"172.16.1.1"}],"routes":%s}' "$1" "${2:-[]}"
}

# --- the Anthos guide's NAD (ipvlan l2 on ens224 with whereabouts), as the pod's net1 behind
# a primary, through the meta-plugin
anthos() {
  s=anthos
  pod an
  nad='{"cniVersion":"0.4.0","name":"gke-network-1","type":"ipvlan","master":"ens224","mode":"l2","ipam":{"type":"whereabouts","range":"172.16.0.0/24"}}'
  primary='{"cniVersion":"0.4.0","name":"cluster","type":"macvlan","master":"ens192","ipam":{"type":"static","addresses":[{"address":"10.244.0.5/24"}]}}'
  conf='{"cniVersion":"0.4.0","name":"pods","type":"multinic","cniDir":"/var/lib/cni/multinic","delegates":['"$primary"','"$nad"']}'
  cni $s add ADD an eth0 $OURS/multinic $OURS "$conf"
  snap $s pod an
  cni $s check CHECK an eth0 $OURS/multinic $OURS "$conf"
  cni $s del DEL an eth0 $OURS/multinic $OURS "$conf"
  snap $s after an
  ip netns del an
}

# --- every mode, ours and the reference on fresh pods with the same config
modes() {
  for mode in l2 l3 l3s; do
    s=mode-$mode
    pod "o$mode"
    pod "r$mode"
    conf='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","mode":"'$mode'","mtu":1400,"ipam":'"$(static_ipam 172.16.1.10/24 '[{"dst":"198.51.100.0/24"},{"dst":"203.0.113.0/24","gw":"172.16.1.254"}]')"'}'
    # One after the other: ipvlan refuses an address another port of the master holds.
    cni $s ours.add ADD "o$mode" net1 $OURS/ipvlan $OURS "$conf"
    prev=$(printf '%s' "$conf" | sed 's/}$//')',"prevResult":'"$out"'}'
    snap $s ours "o$mode"
    cni $s ours.check CHECK "o$mode" net1 $OURS/ipvlan $OURS "$prev"
    cni $s ours.del DEL "o$mode" net1 $OURS/ipvlan $OURS "$conf"
    snap $s ours.after "o$mode"
    cni $s ref.add ADD "r$mode" net1 $REF/ipvlan $REF "$conf"
    snap $s ref "r$mode"
    cni $s ref.del DEL "r$mode" net1 $REF/ipvlan $REF "$conf"
    ip netns del "o$mode"
    ip netns del "r$mode"
  done
}

# --- CHECK: passes after ADD, names what changed behind its back
check() {
  s=check
  pod ck
  conf='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","mode":"l2","ipam":'"$(static_ipam 172.16.1.11/24 '[{"dst":"198.51.100.0/24"}]')"'}'
  cni $s add ADD ck net1 $OURS/ipvlan $OURS "$conf"
  prev=$(printf '%s' "$conf" | sed 's/}$//')',"prevResult":'"$out"'}'
  cni $s check CHECK ck net1 $OURS/ipvlan $OURS "$prev"
  ip -n ck addr flush dev net1
  ip -n ck link set net1 mtu 1300
  cni $s check2 CHECK ck net1 $OURS/ipvlan $OURS "$prev"
  cni $s del DEL ck net1 $OURS/ipvlan $OURS "$conf"
  cni $s del2 DEL ck net1 $OURS/ipvlan $OURS "$conf"
  ip netns del ck
  cni $s del3 DEL ck net1 $OURS/ipvlan $OURS "$conf" /run/netns/ck
}

# --- chained: no master, the single interface of prevResult is the master; its IPs are applied
chained() {
  s=chained-node
  pod "oc"
  pod "rc"
  conf='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","mode":"l2","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"ens224"}],"ips":[{"address":"172.16.2.5/24","gateway":"172.16.2.1","interface":0}],"routes":[{"dst":"198.51.100.0/24"}]}}'
  cni $s ours.add ADD oc net1 $OURS/ipvlan $OURS "$conf"
  snap $s ours oc
  cni $s ours.del DEL oc net1 $OURS/ipvlan $OURS "$conf"
  cni $s ref.add ADD rc net1 $REF/ipvlan $REF "$conf"
  snap $s ref rc
  ip netns del oc
  ip netns del rc

  # the master is in the pod (prevResult's interface has the pod as sandbox)
  s=chained-pod
  pod cp
  ip link add cpnode type veth peer name cppod
  ip link set cppod netns cp
  ip -n cp link set cppod name eth0
  ip -n cp link set eth0 up
  emit $s master.index "$(ip netns exec cp cat /sys/class/net/eth0/ifindex)"
  conf='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","mode":"l3","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/cp"}],"ips":[{"address":"10.77.0.5/24","interface":0}]}}'
  cni $s add ADD cp net1 $OURS/ipvlan $OURS "$conf"
  snap $s pod cp
  cni $s del DEL cp net1 $OURS/ipvlan $OURS "$conf"
  snap $s after cp
  ip netns del cp
}

# --- an MTU above the master's: code 7 naming both, nothing created
mtu() {
  s=mtu
  pod mt
  conf='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","mtu":9000,"ipam":'"$(static_ipam 172.16.1.12/24)"'}'
  cni $s add ADD mt net1 $OURS/ipvlan $OURS "$conf"
  snap $s pod mt
  ip netns del mt
}

# --- failures part-way: a route via an unreachable gateway after whereabouts allocated; the
# next ADD must get the same (first) address back
failure() {
  s=failure
  pod f1
  pod f2
  wb='{"type":"whereabouts","range":"172.16.9.0/24","data_dir":"/var/lib/cni/wb-failure"}'
  bad='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","ipam":{"type":"whereabouts","range":"172.16.9.0/24","data_dir":"/var/lib/cni/wb-failure","routes":[{"dst":"198.51.100.0/24","gw":"192.0.2.99"}]}}'
  good='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","ipam":'"$wb"'}'
  cni $s bad.add ADD f1 net1 $OURS/ipvlan $OURS "$bad"
  snap $s bad f1
  cni $s good.add ADD f2 net1 $OURS/ipvlan $OURS "$good"
  cni $s good.del DEL f2 net1 $OURS/ipvlan $OURS "$good"
  # a duplicate address in the IPAM result: the second address fails after the first took
  dup='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","ipam":{"type":"static","addresses":[{"address":"172.16.1.20/24"},{"address":"172.16.1.20/24"}]}}'
  cni $s dup.add ADD f1 net1 $OURS/ipvlan $OURS "$dup"
  snap $s dup f1
  ip netns del f1
  ip netns del f2
}

# --- failures at the steps no config can break (the test hook), and of the IPAM itself: after
# each, the pod has only lo, the node is as before and the pool holds no allocation of it
failsteps() {
  s=failsteps
  dd=/var/lib/cni/wb-failsteps
  pod f3
  pod f4
  conf='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","ipam":{"type":"whereabouts","range":"172.16.10.0/24","data_dir":"'$dd'"}}'
  snap $s node.before -
  for step in rename sysctl ipam; do
    FAILSTEP=$step
    cni $s $step.add ADD f3 net1 $OURS/ipvlan $OURS "$conf"
    FAILSTEP=""
    snap $s $step f3
    emit $s $step.pool "$(cat $dd/ippools/*.json 2>/dev/null)"
  done
  # IPAM fails for real: a type nobody has, and a range whose one address another pod holds
  cni $s noipam.add ADD f3 net1 $OURS/ipvlan $OURS '{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","ipam":{"type":"no-such-ipam"}}'
  snap $s noipam f3
  one='{"cniVersion":"1.0.0","name":"ipv","type":"ipvlan","master":"ens224","ipam":{"type":"whereabouts","range":"172.16.11.0/24","range_start":"172.16.11.5","range_end":"172.16.11.5","data_dir":"'$dd-one'"}}'
  cni $s one.add ADD f4 net1 $OURS/ipvlan $OURS "$one"
  cni $s full.add ADD f3 net1 $OURS/ipvlan $OURS "$one"
  snap $s full f3
  emit $s full.pool "$(cat $dd-one/ippools/*.json 2>/dev/null)"
  cni $s one.del DEL f4 net1 $OURS/ipvlan $OURS "$one"
  snap $s node.after -
  # the first address of the range is still free for the next pod
  cni $s good.add ADD f3 net1 $OURS/ipvlan $OURS "$conf"
  cni $s good.del DEL f3 net1 $OURS/ipvlan $OURS "$conf"
  ip netns del f3
  ip netns del f4
}

# --- bridge VLANs (this needs VLAN filtering, which the host kernel lacks)
static4() { # <cidr>
  printf '{"type":"static","addresses":[{"address":"%s"}]}' "$1"
}

# One bridge plugin run on a fresh pod and a fresh bridge br-v: the pod, the node, the VLANs of
# every bridge port, then DEL and the bridge (and its VLAN gateway) removed.
bridge_run() { # <scenario> <side> <exe> <CNI_PATH> <conf>
  p=b$2
  pod $p
  cni $1 $2.add ADD $p net1 $3 $4 "$5"
  snap $1 $2 $p
  snap $1 $2.node -
  emit $1 $2.vlans "$(bridge -j vlan show)"
  cni $1 $2.del DEL $p net1 $3 $4 "$5"
  emit $1 $2.after "$(ip -n $p -j link show)"
  ip netns del $p
  ip link del br-v.100 2>/dev/null
  ip link del br-v 2>/dev/null
}

bridge_vlans() {
  # the keys reference 1.1.1 knows: ours and the reference on the same config
  s=bvlan-access
  conf='{"cniVersion":"1.0.0","name":"bv","type":"bridge","bridge":"br-v","vlan":100,"ipam":'"$(static4 10.30.0.10/24)"'}'
  bridge_run $s ours $OURS/bridge $OURS "$conf"
  bridge_run $s ref $REF/bridge $REF "$conf"
  s=bvlan-gw
  conf='{"cniVersion":"1.0.0","name":"bv","type":"bridge","bridge":"br-v","vlan":100,"isGateway":true,"ipam":'"$(static4 10.30.0.10/24)"'}'
  bridge_run $s ours $OURS/bridge $OURS "$conf"
  bridge_run $s ref $REF/bridge $REF "$conf"
  # the newer keys (vlanTrunk, preserveDefaultVlan): ours alone
  s=bvlan-newer
  bridge_run $s access-nodefault $OURS/bridge $OURS '{"cniVersion":"1.0.0","name":"bv","type":"bridge","bridge":"br-v","vlan":100,"preserveDefaultVlan":false,"isGateway":true,"ipam":'"$(static4 10.30.0.10/24)"'}'
  bridge_run $s trunk $OURS/bridge $OURS '{"cniVersion":"1.0.0","name":"bv","type":"bridge","bridge":"br-v","vlanTrunk":[{"id":200},{"minID":300,"maxID":302}],"ipam":{}}'
  bridge_run $s trunk-nodefault $OURS/bridge $OURS '{"cniVersion":"1.0.0","name":"bv","type":"bridge","bridge":"br-v","vlanTrunk":[{"id":200},{"minID":300,"maxID":302}],"preserveDefaultVlan":false,"ipam":{}}'
}

# --- VLANs separate pods on one bridge: A and B on VLAN 100 (with its gateway), C on 200
bridge_ping() {
  s=bvlan-ping
  for p in pa pb pc; do pod $p; done
  v100() { printf '{"cniVersion":"1.0.0","name":"bv","type":"bridge","bridge":"br-v","vlan":100,"isGateway":true,"ipam":%s}' "$(static4 "$1")"; }
  v200='{"cniVersion":"1.0.0","name":"bv","type":"bridge","bridge":"br-v","vlan":200,"ipam":'"$(static4 10.31.0.12/24)"'}'
  cni $s a.add ADD pa net1 $OURS/bridge $OURS "$(v100 10.31.0.10/24)"
  cni $s b.add ADD pb net1 $OURS/bridge $OURS "$(v100 10.31.0.11/24)"
  cni $s c.add ADD pc net1 $OURS/bridge $OURS "$v200"
  for target in 10.31.0.1 10.31.0.11 10.31.0.12; do
    ip netns exec pa ping -c 2 -W 2 $target >/dev/null 2>&1
    emit $s ping.$target "$?"
  done
  cni $s a.del DEL pa net1 $OURS/bridge $OURS "$(v100 10.31.0.10/24)"
  cni $s b.del DEL pb net1 $OURS/bridge $OURS "$(v100 10.31.0.11/24)"
  cni $s c.del DEL pc net1 $OURS/bridge $OURS "$v200"
  for p in pa pb pc; do ip netns del $p; done
  ip link del br-v.100 2>/dev/null
  ip link del br-v 2>/dev/null
}

setup_node
for scenario in anthos modes check chained mtu failure failsteps bridge_vlans bridge_ping; do
  $scenario
  echo "MNTEST-SCENARIO $scenario"
done
emit end done 1

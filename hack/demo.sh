#!/usr/bin/env bash
# make demo: the README's main job. Brings up the sandbox (a broker and two
# clusters on this machine), deploys the broker, joins both clusters, exports the
# nettest Service from cluster2, resolves it from a pod in cluster1 under
# clusterset.local and fetches it across the tunnel, then shows the clusterset.
#
# Environment: CABLE_DRIVER (wireguard, vxlan or libreswan; default wireguard),
# GLOBALNET=1 (clusters with the same CIDRs, connected through Globalnet).
# The sandbox stays up afterwards: `make sandbox-down` removes it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/_output/bin
kubectl=$root/_output/k8s/kubectl
work=$root/_output/demo
driver=${CABLE_DRIVER:-wireguard}
globalnet=${GLOBALNET:-0}

began=$(date +%s%N)
step() {
	local ms=$((($(date +%s%N) - began) / 1000000))
	printf '\n\033[1m[%4d.%01ds] %s\033[0m\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}
run() { printf '$ %s\n' "$*"; "$@"; }
fail() { printf '\ndemo failed: %s\n' "$*" >&2; exit 1; }

# retry N CMD...: runs CMD every second until it succeeds, at most N times; each
# new failure is shown once.
retry() {
	local n=$1 out last=
	shift
	for ((i = 1; i <= n; i++)); do
		if out=$("$@" 2>&1) && [ -n "$out" ]; then
			printf '%s\n' "$out"
			return 0
		fi
		out=${out:-(no answer)}
		if [ "$out" != "$last" ]; then printf '  (not yet: %s)\n' "$out"; fi
		last=$out
		sleep 1
	done
	return 1
}

case $driver in
wireguard | vxlan | libreswan) ;;
*) fail "CABLE_DRIVER=$driver is not a cable driver: use wireguard, vxlan or libreswan" ;;
esac
if [ "$driver" = libreswan ] && ! grep -qw esp4 /proc/modules 2>/dev/null && ! modprobe -n esp4 2>/dev/null; then
	fail "CABLE_DRIVER=libreswan needs the kernel's ESP (esp4) support, which this machine lacks: use CABLE_DRIVER=wireguard"
fi

mkdir -p "$work"
cd "$work"
sandbox_flags=()
broker_flags=()
if [ "$globalnet" = 1 ]; then
	sandbox_flags+=(--overlapping-cidrs)
	broker_flags+=(--globalnet)
fi

step "Removing any earlier sandbox"
run "$bin/sandbox" down

step "Bringing up the sandbox: a broker and two clusters (each: 2 gateway nodes, 1 worker)"
run "$bin/sandbox" up "${sandbox_flags[@]}"
kc() { "$bin/sandbox" kubeconfig "$1"; }

step "Deploying the broker"
run "$bin/subctl" deploy-broker --kubeconfig "$(kc broker)" "${broker_flags[@]}"

for c in cluster1 cluster2; do
	step "Joining $c with the $driver cable driver"
	run "$bin/subctl" join broker-info.subm --kubeconfig "$(kc "$c")" --clusterid "$c" --cable-driver "$driver"
done

for c in cluster1 cluster2; do
	step "Waiting for $c's components"
	for w in daemonset/submariner-gateway daemonset/submariner-routeagent deployment/submariner-lighthouse-agent deployment/submariner-lighthouse-coredns; do
		run "$kubectl" --kubeconfig "$(kc "$c")" -n submariner-operator rollout status "$w" --timeout=120s
	done
	if [ "$globalnet" = 1 ]; then
		run "$kubectl" --kubeconfig "$(kc "$c")" -n submariner-operator rollout status daemonset/submariner-globalnet --timeout=120s
	fi
done

step "Waiting for the tunnel between the active gateways"
connected() { "$bin/subctl" show connections --kubeconfig "$(kc cluster1)" | grep -w connected; }
retry 120 connected || fail "cluster1's active gateway has no connected tunnel to cluster2 (subctl show all says why)"

step "Deploying the nettest Service in cluster2 and a client pod in cluster1"
run "$kubectl" --kubeconfig "$(kc cluster2)" apply -f "$root/hack/demo/nettest.yaml"
run "$kubectl" --kubeconfig "$(kc cluster1)" apply -f "$root/hack/demo/client.yaml"
run "$kubectl" --kubeconfig "$(kc cluster2)" -n demo rollout status deployment/nettest --timeout=120s
run "$kubectl" --kubeconfig "$(kc cluster1)" -n demo wait --for=condition=Ready pod/client --timeout=120s

step "Exporting demo/nettest from cluster2"
run "$bin/subctl" export service nettest --namespace demo --kubeconfig "$(kc cluster2)"
run "$kubectl" --kubeconfig "$(kc cluster1)" -n demo wait --for=create serviceimport/nettest --timeout=60s

name=nettest.demo.svc.clusterset.local
step "Resolving $name from cluster1's client pod"
printf '$ sandbox exec cluster1 demo/client -- dig +short %s\n' "$name"
retry 60 "$bin/sandbox" exec cluster1 demo/client -- dig +short "$name" || fail "$name does not resolve in cluster1"

step "Fetching http://$name/ from cluster1's client pod, across the tunnel"
printf '$ sandbox exec cluster1 demo/client -- nettest connect --http http://%s/\n' "$name"
retry 30 "$bin/sandbox" exec cluster1 demo/client -- nettest connect --http "http://$name/" ||
	fail "cluster1's client cannot reach $name"

step "The clusterset as cluster1 sees it"
run "$bin/subctl" show all --kubeconfig "$(kc cluster1)"

step "Done: the sandbox stays up (sandbox status; sandbox exec cluster1 demo/client -- CMD...; make sandbox-down)"

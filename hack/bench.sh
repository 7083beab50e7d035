#!/usr/bin/env bash
# make bench: every benchmark of the project, each against its reference run in
# the same invocation where it has one, with the raw `go test -bench` output kept
# in _output/bench/ and summed up as a table and results.json. Needs root (namespaces, iptables, the sandbox) and dnsperf.
# BENCH=regexp picks benchmarks by the names below; default all.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/_output/bench
mkdir -p "$out"
cd "$root"
pick=${BENCH:-.}

bench() { # name package go-test-args...
	local name=$1 pkg=$2
	shift 2
	[[ $name =~ $pick ]] || return 0
	printf '\n== %s (%s)\n' "$name" "$pkg"
	go test "$pkg" -run '^$' -count=1 -timeout 60m "$@" 2>&1 | tee "$out/$name.txt"
}

# DNS: peak QPS of CoreDNS with our plugin against the in-tree kubernetes
# multicluster plugin on the same 10,000 imports (dnsperf), and per-query cost
# and heap per imported service.
bench dns-qps ./plugin/lighthouse -tags qps -bench QPS -benchtime 1x
bench dns-serve ./plugin/lighthouse -bench 'ServeDNS|Memory' -benchmem
# Export to resolvable, one at a time and in bursts (real API servers).
bench export-latency ./agents/lighthouse -bench ExportToResolvable -benchtime 1x -v
# iptables: 10,000 services, sharded chains against one chain per service.
bench iptables ./agents/netkit/iptables -bench PrivilegedSync
# Globalnet: planning and syncing 10,000 global IPs.
bench globalnet ./agents/globalnet -bench . -benchtime 1x
# The sandbox: join to first cross-cluster connectivity, gateway failover x10
# (wireguard), and iperf3 through each cable driver against the same clusters'
# gateway nodes without a tunnel.
bench failover ./e2e/tests/clusterset -bench Failover -benchtime 1x -v
bench throughput-wireguard ./e2e/tests/clusterset -bench Throughput -benchtime 1x -v
bench throughput-vxlan ./e2e/tests/clustersetvxlan -bench Throughput -benchtime 1x -v

printf '\n== results\n'
go run ./hack/benchreport "$out"

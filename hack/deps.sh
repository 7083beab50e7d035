#!/usr/bin/env bash
# Installs, with apt, the Debian packages the tests and the sandbox need that are not
# installed yet. As a non-root user it only lists what is missing: the tests that need
# those tools skip with the reason.
set -euo pipefail

packages=(
	iproute2        # ip: namespaces, veth, vxlan, routes
	iptables        # iptables-restore for our chains and for kube-proxy
	ipset
	nftables
	conntrack       # kube-proxy flushes stale UDP flows with it
	kmod
	procps
	libreswan       # pluto and whack
	libnss3-tools   # certutil, which initialises pluto's NSS database
	wireguard-tools # wg, to inspect WireGuard devices
	dnsutils        # dig
	dnsperf
	iperf3
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#packages[@]} packages are installed"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing ${missing[*]}; as root run: apt-get install -y ${missing[*]}" >&2
	echo "deps: continuing; the tests that need them will skip" >&2
	exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${missing[*]}"

#!/bin/bash
# Captures the whack and pluto output samples in this directory from two real plutos
# (Libreswan 4.10) in two network namespaces joined by a veth. Run as root from this
# directory: ./capture.sh. It removes everything it creates.
#
#   west 192.0.2.1/24 (subnet 10.1.0.0/16) <--veth--> east 192.0.2.2/24 (subnet 10.2.0.0/16)
set -euo pipefail
cd "$(dirname "$0")"
W=/usr/libexec/ipsec/whack
P=/usr/libexec/ipsec/pluto
T=$(mktemp -d /tmp/whack-capture.XXXXXX)
cleanup() {
	for n in west east; do
		[ -S "$T/$n/run/pluto.ctl" ] && $W --ctlsocket "$T/$n/run/pluto.ctl" --shutdown >/dev/null 2>&1 || true
	done
	wait || true
	ip netns del capture-west 2>/dev/null || true
	ip netns del capture-east 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

ip netns add capture-west
ip netns add capture-east
ip -n capture-west link add eth0 type veth peer name eth0p netns capture-east
ip -n capture-east link set eth0p name eth0
ip -n capture-west addr add 192.0.2.1/24 dev eth0
ip -n capture-east addr add 192.0.2.2/24 dev eth0
for n in west east; do
	ip -n capture-$n link set lo up
	ip -n capture-$n link set eth0 up
	mkdir -p "$T/$n/run" "$T/$n/nss" "$T/$n/ipsec.d"
	certutil -N -d "sql:$T/$n/nss" --empty-password
	echo '%any %any : PSK "c2FtcGxlIHByZS1zaGFyZWQga2V5IGZvciB0aGUgY2FwdHVyZSBzY3JpcHQ="' >"$T/$n/ipsec.secrets"
	chmod 600 "$T/$n/ipsec.secrets"
	ip netns exec capture-$n $P --nofork --stderrlog --rundir "$T/$n/run" --nssdir "$T/$n/nss" \
		--secretsfile "$T/$n/ipsec.secrets" --ipsecdir "$T/$n/ipsec.d" --dumpdir "$T/$n/run" \
		>"$T/$n/log" 2>&1 &
done
for n in west east; do
	for _ in $(seq 100); do [ -S "$T/$n/run/pluto.ctl" ] && break; sleep 0.1; done
done
w() { $W --ctlsocket "$T/west/run/pluto.ctl" "$@"; }
e() { $W --ctlsocket "$T/east/run/pluto.ctl" "$@"; }

# Bidirectional connection (ids are the private IPs), as Submariner adds it.
w --psk --encrypt --ikev2 --forceencaps --name cable-east-0-0 --id 192.0.2.1 --host 192.0.2.1 \
	--client 10.1.0.0/16 --ikeport 4500 --to --id 192.0.2.2 --host 192.0.2.2 --client 10.2.0.0/16 \
	--ikeport 4500 --dpdaction=hold --dpddelay 30 >whack-add.txt
e --psk --encrypt --ikev2 --forceencaps --name cable-west-0-0 --id 192.0.2.2 --host 192.0.2.2 \
	--client 10.2.0.0/16 --ikeport 4500 --to --id 192.0.2.1 --host 192.0.2.1 --client 10.1.0.0/16 \
	--ikeport 4500 --dpdaction=hold --dpddelay 30 >/dev/null
# A server-mode connection (peer from any address, @ ids), added but never initiated.
e --psk --encrypt --ikev2 --name cable-any-0-0 --id @192.0.2.2-0-0 --host 192.0.2.2 \
	--client 10.2.0.0/16 --ikeport 4500 --to --id @192.0.2.9-0-0 --host %any --client 10.9.0.0/16 \
	--dpdaction=hold --dpddelay 30 >/dev/null
e --status >status-east-added.txt

w --psk --encrypt --ikev2 --name cable-east-0-0 --id 192.0.2.1 --host 192.0.2.1 --client 10.1.0.0/16 \
	--to --id 192.0.2.2 --host 192.0.2.2 --client 10.2.0.0/16 >whack-add-duplicate.txt 2>&1 || echo "exit $?" >>whack-add-duplicate.txt
w --route --name no-such-connection >whack-route-unknown.txt 2>&1 || echo "exit $?" >>whack-route-unknown.txt
w --initiate --asynchronous --name no-such-connection >whack-initiate-unknown.txt 2>&1 || echo "exit $?" >>whack-initiate-unknown.txt
$W --ctlsocket "$T/nowhere.ctl" --status >whack-not-running.txt 2>&1 || echo "exit $?" >>whack-not-running.txt

w --route --name cable-east-0-0
e --route --name cable-west-0-0
w --initiate --asynchronous --name cable-east-0-0 >whack-initiate.txt
for _ in $(seq 100); do
	w --showstates | grep -q ESTABLISHED_IKE_SA && e --showstates | grep -q ESTABLISHED_IKE_SA && break
	sleep 0.1
done
sleep 1
w --status >status-west-established.txt
e --status >status-east-established.txt
w --showstates >showstates-west.txt
e --showstates >showstates-east.txt
w --trafficstatus >trafficstatus-west.txt
w --delete --name cable-east-0-0 >whack-delete.txt
w --delete --name cable-east-0-0 >whack-delete-again.txt
w --status >status-west-deleted.txt
grep -E 'ERROR|Child SA|IKE SA|TS_UNACCEPTABLE' "$T/east/log" >pluto-east.log
grep -E 'ERROR|Child SA|IKE SA|TS_UNACCEPTABLE' "$T/west/log" >pluto-west.log
echo "captured into $(pwd)"

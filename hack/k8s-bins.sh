#!/usr/bin/env bash
# Builds etcd, the Kubernetes control-plane binaries, kube-proxy and kubectl from the Go
# module proxy into OUT (default _output/k8s). The build is skipped when OUT already
# holds binaries built from the same pinned go.mod/go.sum files.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/_output/k8s}
tools=$root/e2e/tools/k8s
k8s_version=$(cd "$tools" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
stamp=$(cat "$tools/go.mod" "$tools/go.sum" "$tools/etcd/go.mod" "$tools/etcd/go.sum" "$0" | sha256sum | cut -c1-16)
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)

have_all() {
	[ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ] || return 1
	for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if have_all; then
	echo "k8s-bins: $out is up to date (Kubernetes $k8s_version, stamp $stamp)"
	exit 0
fi

mkdir -p "$out"
rm -f "$out/.stamp"
major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags="$ldflags -X $p.gitVersion=$k8s_version -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

start=$(date +%s)
echo "k8s-bins: building Kubernetes $k8s_version into $out (the first build takes several minutes)"
(cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kube-proxy \
	k8s.io/kubernetes/cmd/kubectl)
echo "k8s-bins: building etcd"
(cd "$tools/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd" .)
echo "$stamp" > "$out/.stamp"
echo "k8s-bins: done in $(( $(date +%s) - start ))s"

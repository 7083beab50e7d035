package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/subctl/brokerinfo"
)

// Test address plan (the clusters are API servers only; nothing routes these):
//
//	cluster1 pods 10.1.0.0/16, services 10.101.0.0/16
//	cluster2 pods 10.2.0.0/16, services 10.102.0.0/16
//	Globalnet range 242.0.0.0/16, 4096 addresses per cluster

// TestBadInputChangesNothing gives join and deploy-broker bad input of every kind
// the issue names and checks that each is refused with a message that names the
// value and the fix, and that neither the joining cluster nor the broker changed.
func TestBadInputChangesNothing(t *testing.T) {
	planes := controlplane.Start(t, "broker", "cluster1", "cluster2")
	b, c1, c2 := planes[0], planes[1], planes[2]
	info := deployBroker(t, b)
	mustSubctl(t, "join", info, "--kubeconfig", c1.Kubeconfig, "--clusterid", "cluster1",
		"--clustercidr", "10.1.0.0/16", "--servicecidr", "10.101.0.0/16")

	dir := t.TempDir()
	content, err := os.ReadFile(info)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.subm")
	if err := os.WriteFile(truncated, content[:len(content)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	corrupted := filepath.Join(dir, "corrupted.subm")
	bad := append([]byte(nil), content...)
	bad[len(bad)/3] ^= 0x01 // one flipped bit, still base64 (letters differ in case/neighbour)
	if err := os.WriteFile(corrupted, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := brokerinfo.ReadFile(info)
	if err != nil {
		t.Fatal(err)
	}
	parsed.JoinerToken = "not-a-token"
	badToken := filepath.Join(dir, "bad-token.subm")
	if _, err := brokerinfo.WriteFile(badToken, parsed, parsed.CreatedAt); err != nil {
		t.Fatal(err)
	}

	join := func(file string, args ...string) []string {
		return append([]string{"join", file, "--kubeconfig", c2.Kubeconfig}, args...)
	}
	good := []string{"--clusterid", "cluster2", "--clustercidr", "10.2.0.0/16", "--servicecidr", "10.102.0.0/16"}
	with := func(overrides ...string) []string {
		// good, with each flag in overrides replacing its default value
		out := append([]string(nil), good...)
		for i := 0; i+1 < len(overrides); i += 2 {
			replaced := false
			for j := 0; j+1 < len(out); j += 2 {
				if out[j] == overrides[i] {
					out[j+1], replaced = overrides[i+1], true
				}
			}
			if !replaced {
				out = append(out, overrides[i], overrides[i+1])
			}
		}
		return out
	}

	before := map[string][]string{"broker": snapshot(t, b), "cluster2": snapshot(t, c2)}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"truncated broker-info", join(truncated, good...), []string{truncated + " is damaged:", "copy it again"}},
		{"corrupted broker-info", join(corrupted, good...), []string{corrupted + " is damaged:"}},
		{"missing broker-info", join(filepath.Join(dir, "nothing.subm"), good...), []string{"does not exist: give the broker-info.subm that subctl deploy-broker wrote"}},
		{"unreachable broker", join(info, with("--broker-url", "https://127.0.0.1:1")...),
			[]string{"cannot reach the broker at https://127.0.0.1:1", "check that this machine reaches it"}},
		{"refused joiner token", join(badToken, good...), []string{"refused the joiner token in " + badToken, "run subctl deploy-broker again"}},
		{"invalid cluster ID", join(info, with("--clusterid", "Cluster_2")...),
			[]string{`--clusterid: cluster ID "Cluster_2" is not an RFC 1123 label`}},
		{"unknown cable driver", join(info, with("--cable-driver", "ipsec")...),
			[]string{`--cable-driver: unknown cable driver "ipsec": use one of libreswan, wireguard, vxlan`}},
		{"CIDR with host bits", join(info, with("--clustercidr", "10.2.0.1/16")...),
			[]string{`--clustercidr "10.2.0.1/16" has host bits set: did you mean 10.2.0.0/16?`}},
		{"overlap with a joined cluster", join(info, with("--clustercidr", "10.1.128.0/17")...),
			[]string{"this cluster's Pod CIDR 10.1.128.0/17 overlaps the Pod CIDR 10.1.0.0/16 of cluster cluster1", "deploy the broker with --globalnet"}},
		{"own CIDRs overlap", join(info, with("--servicecidr", "10.2.3.0/24")...),
			[]string{"the Pod CIDR 10.2.0.0/16 overlaps the Service CIDR 10.2.3.0/24 of the same cluster"}},
		{"global CIDR without Globalnet", join(info, with("--globalnet-cidr", "242.9.0.0/16")...),
			[]string{"--globalnet-cidr 242.9.0.0/16: the broker does not use Globalnet"}},
		{"unknown gateway node", join(info, with("--label-gateway", "no-such-node")...),
			[]string{"--label-gateway no-such-node: the cluster has no node no-such-node"}},
		{"unknown image component", join(info, with("--image-override", "gateway=x/y:z")...),
			[]string{`unknown component "gateway"`}},
		{"bad Globalnet range", []string{"deploy-broker", "--kubeconfig", b.Kubeconfig, "--globalnet", "--globalnet-cidr-range", "127.0.0.0/16", "-o", filepath.Join(dir, "x.subm")},
			[]string{"--globalnet-cidr-range: Globalnet CIDR 127.0.0.0/16 overlaps 127.0.0.0/8 (loopback)"}},
		{"cluster size not a power of two", []string{"deploy-broker", "--kubeconfig", b.Kubeconfig, "--globalnet", "--default-globalnet-cluster-size", "3000", "-o", filepath.Join(dir, "x.subm")},
			[]string{"--default-globalnet-cluster-size: Globalnet cluster size 3000 is not a power of two: use 2048 or 4096"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := subctl(t, tc.args...)
			wantError(t, err, tc.want...)
			for name, p := range map[string]*controlplane.Plane{"broker": b, "cluster2": c2} {
				if diff := cmp.Diff(before[name], snapshot(t, p)); diff != "" {
					t.Errorf("the refused command changed %s (-before +after):\n%s", name, diff)
				}
			}
		})
	}
	// A joined cluster cannot join again under another ID.
	beforeC1 := snapshot(t, c1)
	_, err = subctl(t, "join", info, "--kubeconfig", c1.Kubeconfig, "--clusterid", "cluster9",
		"--clustercidr", "10.9.0.0/16", "--servicecidr", "10.109.0.0/16")
	wantError(t, err, "this cluster already joined as cluster1: run subctl uninstall first to join it as cluster9")
	if diff := cmp.Diff(beforeC1, snapshot(t, c1)); diff != "" {
		t.Errorf("the refused join changed cluster1 (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.subm")); err == nil {
		t.Error("a refused deploy-broker wrote a broker-info file")
	}
	// A good join still works after all that; without CIDRs it discovers them, here
	// from a kubeadm-style controller-manager pod and the API server's ServiceCIDR,
	// and says where it found them.
	if _, err := c2.Kube.CoreV1().Pods("kube-system").Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-controller-manager-cp1", Labels: map[string]string{"component": "kube-controller-manager"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-controller-manager", Image: "registry.k8s.io/kube-controller-manager:v1.37.2",
			Command: []string{"kube-controller-manager", "--allocate-node-cidrs=true", "--cluster-cidr=10.2.0.0/16"}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out := mustSubctl(t, join(info, "--clusterid", "cluster2")...)
	for _, want := range []string{
		"Pod CIDRs 10.2.0.0/16, from the kube-controller-manager pod's --cluster-cidr",
		"Service CIDRs 10.0.0.0/24, from the ServiceCIDR objects",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("join did not say %q", want)
		}
	}
}

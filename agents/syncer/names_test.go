package syncer

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestDefaultBrokerName(t *testing.T) {
	long := strings.Repeat("a", 240)
	for _, tc := range []struct {
		name                         string
		clusterID, namespace, object string
		want                         string
	}{
		{"short", "cluster1", "submariner-operator", "gw1", "gw1.submariner-operator.cluster1"},
		{"dotted name", "c1", "demo", "web.v2", "web.v2.demo.c1"},
		{"exactly at the limit", "c1", "ns", strings.Repeat("b", 253-len(".ns.c1")), strings.Repeat("b", 253-len(".ns.c1")) + ".ns.c1"},
		// One character over: cut to 253-6-11 characters, then "-" and the hash.
		{"one over the limit", "c1", "ns", strings.Repeat("b", 253-len(".ns.c1")+1),
			strings.Repeat("b", 253-len(".ns.c1")-11) + "-" + hashOf("c1", "ns", strings.Repeat("b", 253-len(".ns.c1")+1)) + ".ns.c1"},
		{"cut before a dash", "c1", "ns", strings.Repeat("b", 235) + "-" + long,
			strings.Repeat("b", 235) + "-" + hashOf("c1", "ns", strings.Repeat("b", 235)+"-"+long) + ".ns.c1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DefaultBrokerName(tc.clusterID, tc.namespace, tc.object)
			if got != tc.want {
				t.Errorf("DefaultBrokerName(%q, %q, %q)\n got %q\nwant %q", tc.clusterID, tc.namespace, tc.object, got, tc.want)
			}
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("%q is not a valid name: %v", got, errs)
			}
		})
	}
}

// hashOf is the first 10 hex digits of the SHA-256 of "clusterID/namespace/name".
func hashOf(clusterID, namespace, name string) string {
	return sha256Prefix(clusterID + "/" + namespace + "/" + name)
}

func sha256Prefix(s string) string {
	sum := sha256.Sum256([]byte(s))
	return fmt.Sprintf("%x", sum)[:10]
}

func TestHashOfKnownValue(t *testing.T) {
	// printf 'abc' | sha256sum
	if got, want := sha256Prefix("abc"), "ba7816bf8f"; got != want {
		t.Errorf("sha256Prefix(abc) = %s, want %s", got, want)
	}
}

// TestDefaultBrokerNameSeparatesOrigins checks origins that a dash-joined name
// would confuse.
func TestDefaultBrokerNameSeparatesOrigins(t *testing.T) {
	origins := [][3]string{
		{"c", "a-b", "x"}, {"c", "a", "b-x"}, {"b-c", "a", "x"}, {"c", "b", "x-a"},
		{"cluster1", "ns", "gw"}, {"cluster2", "ns", "gw"}, {"cluster1", "ns2", "gw"},
		{"c1", "ns", strings.Repeat("a", 300)}, {"c1", "ns", strings.Repeat("a", 299)},
	}
	seen := map[string][3]string{}
	for _, o := range origins {
		name := DefaultBrokerName(o[0], o[1], o[2])
		if prev, ok := seen[name]; ok {
			t.Errorf("%v and %v both get the broker name %q", prev, o, name)
		}
		seen[name] = o
	}
}

func TestKeepName(t *testing.T) {
	if got := KeepName("cluster1", "submariner-operator", "cluster1-gw1"); got != "cluster1-gw1" {
		t.Errorf("KeepName = %q, want cluster1-gw1", got)
	}
}

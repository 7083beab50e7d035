package v1

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestGlobalnetNames(t *testing.T) {
	long := strings.Repeat("a", 250)
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"service ingress IP", ServiceGlobalIngressIPName("web"), "web"},
		{"pod ingress IP", PodGlobalIngressIPName("db-0"), "pod.db-0"},
		{"endpoints ingress IP", EndpointsGlobalIngressIPName(netip.MustParseAddr("10.1.2.3")), "ep.10-1-2-3"},
		{"internal service", InternalServiceName("web"), "submariner-" + InternalServiceName("web")[len("submariner-"):]},
		{"pod name at the limit", PodGlobalIngressIPName(long[:249]), "pod." + long[:249]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
			if errs := validation.IsDNS1123Subdomain(tc.got); len(errs) > 0 {
				t.Errorf("%q is not a valid object name: %v", tc.got, errs)
			}
		})
	}

	// Internal Service names are Submariner's: 32 lower-case base32 characters,
	// stable, distinct for distinct Services, and valid Service names.
	svc := InternalServiceName("web")
	if !regexp.MustCompile(`^submariner-[a-z2-7]{32}$`).MatchString(svc) {
		t.Errorf("internal Service name %q is not submariner-<32 base32 characters>", svc)
	}
	if errs := validation.IsDNS1035Label(svc); len(errs) > 0 {
		t.Errorf("internal Service name %q is not a Service name: %v", svc, errs)
	}
	if InternalServiceName("web") != svc || InternalServiceName("web2") == svc {
		t.Error("internal Service names are not stable and distinct")
	}

	// Too long: cut, and kept apart by a hash of the whole name.
	a, b := PodGlobalIngressIPName(long+"x"), PodGlobalIngressIPName(long+"y")
	if a == b {
		t.Errorf("two long pod names map to the same name %q", a)
	}
	for _, n := range []string{a, b} {
		if len(n) > 253 || !strings.HasPrefix(n, "pod.aaaa") {
			t.Errorf("long pod name became %q (%d characters)", n, len(n))
		}
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("%q is not a valid object name: %v", n, errs)
		}
	}
}

func TestGlobalnetTypesRegistered(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kind := range []string{"GlobalEgressIP", "ClusterGlobalEgressIP", "GlobalIngressIP", "GlobalIngressIPList", "Endpoint"} {
		if s.Recognizes(SchemeGroupVersion.WithKind(kind)) {
			got = append(got, kind)
		}
	}
	want := []string{"GlobalEgressIP", "ClusterGlobalEgressIP", "GlobalIngressIP", "GlobalIngressIPList", "Endpoint"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kinds the scheme recognises (-want +got):\n%s", diff)
	}
}

package syncer

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func validEndpointConfig() Config[*submv1.Endpoint] {
	return Config[*submv1.Endpoint]{ClusterID: "cluster1", Local: &rest.Config{}, Broker: &rest.Config{}}
}

func TestConfigDefaults(t *testing.T) {
	s, err := validEndpointConfig().settings()
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Name, BrokerNamespace, SourceNamespace string
		GVK                                    schema.GroupVersionKind
		Resync                                 time.Duration
		Workers                                int
		Backoff                                Backoff
		Up, Down, CopyNamespaceFunc            bool
	}
	got := summary{s.name, s.brokerNamespace, s.up.namespace, s.gvk, s.resync, s.workers, s.backoff,
		s.up.enabled, s.down.enabled, s.down.namespace != nil}
	want := summary{"Endpoint", "submariner-k8s-broker", "submariner-operator",
		schema.GroupVersionKind{Group: "submariner.io", Version: "v1", Kind: "Endpoint"},
		DefaultResyncPeriod, DefaultWorkers, DefaultBackoff, true, true, false}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	if s.up.selector != "!syncer.submariner.io/copy" {
		t.Errorf("default source selector %q, want copies excluded", s.up.selector)
	}
	withSel := validEndpointConfig()
	withSel.ToBroker.LabelSelector = "app=gw"
	if s, _ := withSel.settings(); s.up.selector != "!syncer.submariner.io/copy,app=gw" {
		t.Errorf("source selector %q, want copies excluded and app=gw", s.up.selector)
	}
	if got := s.up.brokerName("c1", "ns", "x"); got != "x.ns.c1" {
		t.Errorf("default broker name = %q, want x.ns.c1", got)
	}

	all := validEndpointConfig()
	all.ToBroker.Namespace = AllNamespaces
	if s, err := all.settings(); err != nil || s.up.namespace != metav1.NamespaceAll {
		t.Errorf("AllNamespaces: namespace %q, error %v; want all namespaces", s.up.namespace, err)
	}
}

// TestConfigErrors checks that bad configuration is refused with a message that
// names the value, what is wrong and how to fix it.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config[*submv1.Endpoint])
		want   []string
	}{
		{"invalid cluster ID", func(c *Config[*submv1.Endpoint]) { c.ClusterID = "Cluster_1" },
			[]string{`cluster ID "Cluster_1" is not valid`, "RFC 1123 label"}},
		{"no local config", func(c *Config[*submv1.Endpoint]) { c.Local = nil }, []string{"Config.Local", "rest.Config"}},
		{"no broker config", func(c *Config[*submv1.Endpoint]) { c.Broker = nil }, []string{"Config.Broker", "broker secret"}},
		{"invalid broker namespace", func(c *Config[*submv1.Endpoint]) { c.BrokerNamespace = "Broker NS" },
			[]string{`broker namespace "Broker NS"`, "leave it empty"}},
		{"invalid source namespace", func(c *Config[*submv1.Endpoint]) { c.ToBroker.Namespace = "all" + strings.Repeat("x", 70) },
			[]string{"source namespace", "syncer.AllNamespaces"}},
		{"invalid copy namespace", func(c *Config[*submv1.Endpoint]) { c.FromBroker.Into = "Copies" },
			[]string{`namespace "Copies" of the copies`, "FromBroker.Namespace"}},
		{"both directions off", func(c *Config[*submv1.Endpoint]) { c.ToBroker.Disabled, c.FromBroker.Disabled = true, true },
			[]string{"both directions are disabled"}},
		{"GVK contradicts the type", func(c *Config[*submv1.Endpoint]) { c.GVK = submv1.SchemeGroupVersion.WithKind("Cluster") },
			[]string{"contradicts type *v1.Endpoint", "leave GVK empty"}},
		{"negative workers", func(c *Config[*submv1.Endpoint]) { c.Workers = -1 }, []string{"worker count -1"}},
		{"negative resync", func(c *Config[*submv1.Endpoint]) { c.ResyncPeriod = -time.Second }, []string{"resync period -1s"}},
		{"jitter out of range", func(c *Config[*submv1.Endpoint]) { c.Backoff.Jitter = 1.5 }, []string{"backoff jitter 1.5"}},
		{"invalid label selector", func(c *Config[*submv1.Endpoint]) { c.ToBroker.LabelSelector = "app in (a" },
			[]string{`label selector "app in (a" of the local objects is not valid`}},
		{"initial above max", func(c *Config[*submv1.Endpoint]) { c.Backoff = Backoff{Initial: time.Minute, Max: time.Second} },
			[]string{"initial delay 1m0s exceeds its maximum 1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validEndpointConfig()
			tc.modify(&cfg)
			_, err := New(cfg)
			if err == nil {
				t.Fatal("New accepted the configuration")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestConfigUnstructured(t *testing.T) {
	cfg := Config[*unstructured.Unstructured]{ClusterID: "cluster1", Local: &rest.Config{}, Broker: &rest.Config{}}
	if _, err := cfg.settings(); err == nil || !strings.Contains(err.Error(), "set Config.GVK") {
		t.Errorf("unstructured without GVK: error %v, want one asking for Config.GVK", err)
	}
	cfg.GVK = submv1.SchemeGroupVersion.WithKind("Cluster")
	s, err := cfg.settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.gvk != cfg.GVK || s.name != "Cluster" {
		t.Errorf("unstructured Cluster: kind %v name %q", s.gvk, s.name)
	}
}

func TestNamespaceFromLabel(t *testing.T) {
	f := NamespaceFromLabel[*submv1.Endpoint](submv1.LabelSourceNamespace)
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		want    string
		wantErr string
	}{
		{"label set", map[string]string{submv1.LabelSourceNamespace: "demo"}, "demo", ""},
		{"no label", nil, "", "no label lighthouse.submariner.io/sourceNamespace"},
		{"not a namespace", map[string]string{submv1.LabelSourceNamespace: "Demo"}, "", `"Demo" does not name a namespace`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f(&submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels}})
			if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got %q, %v; want %q, error containing %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

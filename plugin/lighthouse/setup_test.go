package lighthouse

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	env := func(id string) func(string) string {
		return func(k string) string {
			if k == envClusterID {
				return id
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		input   string              // Corefile lines of the lighthouse directive
		getenv  func(string) string // the environment
		want    *config
		wantErr string // a substring of the error; "" for success
	}{
		{
			name:   "defaults: zones from the server block, cluster ID from the environment",
			input:  "lighthouse",
			getenv: env("cluster1"),
			want:   &config{zones: []string{"clusterset.local."}, ttl: 5, clusterID: "cluster1"},
		},
		{
			name:   "zones as arguments",
			input:  "lighthouse clusterset.local SuperCluster.Local.",
			getenv: env("cluster1"),
			want:   &config{zones: []string{"clusterset.local.", "supercluster.local."}, ttl: 5, clusterID: "cluster1"},
		},
		{
			name: "every option",
			input: `lighthouse {
				ttl 30
				fallthrough demo.svc.clusterset.local
				kubeconfig /etc/kube/config remote
				cluster-id cluster2
				cluster-specific-names
			}`,
			getenv: env("cluster1"),
			want: &config{
				zones: []string{"clusterset.local."}, ttl: 30, fall: fall.F{Zones: []string{"demo.svc.clusterset.local."}},
				kubeconfig: "/etc/kube/config", context: "remote", clusterID: "cluster2", clusterSpecificNames: true,
			},
		},
		{
			name:   "fallthrough for every zone, TTL 0, kubeconfig without a context",
			input:  "lighthouse {\nttl 0\nfallthrough\nkubeconfig /k\n}",
			getenv: env("cluster1"),
			want: &config{zones: []string{"clusterset.local."}, ttl: 0, fall: fall.F{Zones: []string{"."}},
				kubeconfig: "/k", clusterID: "cluster1"},
		},
		{
			name:   "cluster-id needs no environment",
			input:  "lighthouse {\ncluster-id c3\n}",
			getenv: env(""),
			want:   &config{zones: []string{"clusterset.local."}, ttl: 5, clusterID: "c3"},
		},
		{name: "TTL too large", input: "lighthouse {\nttl 3601\n}", getenv: env("c1"), wantErr: `ttl "3601": want a whole number of seconds from 0 to 3600`},
		{name: "negative TTL", input: "lighthouse {\nttl -1\n}", getenv: env("c1"), wantErr: `ttl "-1"`},
		{name: "TTL not a number", input: "lighthouse {\nttl 5s\n}", getenv: env("c1"), wantErr: `ttl "5s"`},
		{name: "TTL without a value", input: "lighthouse {\nttl\n}", getenv: env("c1"), wantErr: `ttl takes SECONDS, got 0 arguments []`},
		{name: "TTL twice", input: "lighthouse {\nttl 5\nttl 6\n}", getenv: env("c1"), wantErr: "option ttl is given twice"},
		{name: "unknown option", input: "lighthouse {\nendpoint http://x\n}", getenv: env("c1"), wantErr: `unknown property "endpoint"`},
		{name: "kubeconfig without a path", input: "lighthouse {\nkubeconfig\n}", getenv: env("c1"), wantErr: `kubeconfig takes KUBECONFIG [CONTEXT], got 0 arguments []`},
		{name: "kubeconfig with three arguments", input: "lighthouse {\nkubeconfig a b c\n}", getenv: env("c1"), wantErr: `kubeconfig takes KUBECONFIG [CONTEXT], got 3 arguments ["a" "b" "c"]`},
		{name: "invalid cluster-id", input: "lighthouse {\ncluster-id Cluster_1\n}", getenv: env("c1"), wantErr: `cluster-id: cluster ID "Cluster_1" is not a DNS label`},
		{name: "cluster-id without a value", input: "lighthouse {\ncluster-id\n}", getenv: env("c1"), wantErr: `cluster-id takes ID, got 0 arguments []`},
		{name: "cluster-specific-names with an argument", input: "lighthouse {\ncluster-specific-names yes\n}", getenv: env("c1"), wantErr: `cluster-specific-names takes no arguments, got "yes"`},
		{name: "no cluster ID", input: "lighthouse", getenv: env(""), wantErr: "no cluster ID: set the SUBMARINER_CLUSTERID environment variable or the cluster-id option"},
		{name: "invalid cluster ID in the environment", input: "lighthouse", getenv: env("c.1"), wantErr: `environment variable SUBMARINER_CLUSTERID: cluster ID "c.1" is not a DNS label`},
		{name: "invalid zone", input: "lighthouse clusterset..local", getenv: env("c1"), wantErr: `zone "clusterset..local" is not a domain name`},
		{name: "invalid fallthrough zone", input: "lighthouse {\nfallthrough a..b\n}", getenv: env("c1"), wantErr: `fallthrough: zone "a..b" is not a domain name`},
		{name: "twice in a server block", input: "lighthouse\nlighthouse", getenv: env("c1"), wantErr: plugin.ErrOnce.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tt.input)
			c.ServerBlockKeys = []string{"clusterset.local:53"}
			got, err := parse(c, tt.getenv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(config{})); diff != "" {
				t.Errorf("parse() (-want +got):\n%s", diff)
			}
		})
	}
}

const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: "t"}
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`

// TestSetup runs the whole setup: a good block adds the plugin; bad input stops
// setup with an error that names the option, before anything is started.
func TestSetup(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(good, []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envClusterID, "cluster1")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")

	t.Run("good", func(t *testing.T) {
		c := caddy.NewTestController("dns", "lighthouse {\nkubeconfig "+good+"\n}")
		c.ServerBlockKeys = []string{"clusterset.local:53"}
		if err := setup(c); err != nil {
			t.Fatalf("setup: %v", err)
		}
		plugins := dnsserver.GetConfig(c).Plugin
		if len(plugins) != 1 {
			t.Fatalf("setup added %d plugins, want 1", len(plugins))
		}
		lh, ok := plugins[0](nil).(*Lighthouse)
		if !ok {
			t.Fatalf("setup added %T", plugins[0](nil))
		}
		if diff := cmp.Diff([]string{"clusterset.local."}, lh.Zones); diff != "" {
			t.Errorf("zones (-want +got):\n%s", diff)
		}
		if lh.Ready() {
			t.Error("Ready() before the informers started")
		}
	})

	for _, tt := range []struct {
		name, input, wantErr string
	}{
		{"missing kubeconfig file", "lighthouse {\nkubeconfig " + filepath.Join(dir, "nope") + "\n}", "plugin/lighthouse: kubeconfig " + filepath.Join(dir, "nope") + ":"},
		{"unknown context", "lighthouse {\nkubeconfig " + good + " other\n}", "plugin/lighthouse: kubeconfig " + good + " other:"},
		{"no kubeconfig outside a cluster", "lighthouse", "plugin/lighthouse: not running in a Kubernetes pod and no kubeconfig option: add `kubeconfig PATH [CONTEXT]`"},
		{"bad option", "lighthouse {\nttl x\n}", `plugin/lighthouse: Testfile:2 - Error during parsing: ttl "x"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tt.input)
			c.ServerBlockKeys = []string{"clusterset.local:53"}
			err := setup(c)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("setup() error = %v, want one containing %q", err, tt.wantErr)
			}
			if n := len(dnsserver.GetConfig(c).Plugin); n != 0 {
				t.Errorf("failed setup added %d plugins", n)
			}
		})
	}

	t.Run("ErrOnce", func(t *testing.T) {
		c := caddy.NewTestController("dns", "lighthouse\nlighthouse")
		if err := setup(c); !errors.Is(err, plugin.ErrOnce) {
			t.Errorf("setup() error = %v, want %v", err, plugin.ErrOnce)
		}
	})
}

package component_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/submariner-go/submariner/agents/component"
)

func TestParseTakesDefaultsFromEnvironment(t *testing.T) {
	t.Setenv("SUBMARINER_CLUSTERID", "from-env")
	t.Setenv("SUBMARINER_NAMESPACE", "ns-from-env")
	t.Setenv("SUBMARINER_CLUSTERCIDR", "10.1.0.0/16, 10.2.0.0/16")
	t.Setenv("SUBMARINER_VERBOSITY", "3")

	var o component.Options
	var n component.NetworkOptions
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	env := o.AddFlags(fs, ":0")
	netEnv := n.AddFlags(fs)
	if err := component.Parse(fs, []string{"--namespace=ns-from-flag"}, env, netEnv); err != nil {
		t.Fatal(err)
	}
	got := []string{o.ClusterID, o.Namespace, strings.Join(n.ClusterCIDRs, ";")}
	want := []string{"from-env", "ns-from-flag", "10.1.0.0/16;10.2.0.0/16"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsed values (-want +got):\n%s", diff)
	}
	if o.Verbosity != 3 {
		t.Errorf("verbosity %d, want 3 from SUBMARINER_VERBOSITY", o.Verbosity)
	}
}

func TestParseNamesBadEnvironmentValue(t *testing.T) {
	t.Setenv("SUBMARINER_UNINSTALL", "maybe")
	var o component.Options
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	err := component.Parse(fs, nil, o.AddFlags(fs, ""))
	if err == nil || !strings.Contains(err.Error(), "SUBMARINER_UNINSTALL") || !strings.Contains(err.Error(), "--uninstall") {
		t.Errorf("Parse with SUBMARINER_UNINSTALL=maybe: %v, want an error naming the variable and the flag", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    component.Options
		want []string
	}{
		{name: "valid", o: component.Options{ClusterID: "cluster1", Namespace: "ns", NodeName: "n", MetricsAddr: ":32780"}},
		{name: "bad cluster ID", o: component.Options{ClusterID: "Cluster1", Namespace: "ns", NodeName: "n"}, want: []string{"--cluster-id", "RFC 1123"}},
		{name: "bad metrics address", o: component.Options{ClusterID: "c", Namespace: "ns", NodeName: "n", MetricsAddr: "32780"}, want: []string{"--metrics-addr", "host:port"}},
		{name: "several problems", o: component.Options{}, want: []string{"--cluster-id", "--namespace", "--node-name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors mentioning %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestNetworkOptionsParse(t *testing.T) {
	n := component.NetworkOptions{ClusterCIDRs: []string{"10.1.0.0/16"}, ServiceCIDRs: []string{"100.1.0.0/16"}}
	got, err := n.Parse()
	if err != nil || got.Cluster[0].String() != "10.1.0.0/16" || got.Service[0].String() != "100.1.0.0/16" || got.Globalnet() {
		t.Errorf("Parse() = %+v, %v", got, err)
	}
	n.GlobalCIDRs = []string{"242.0.0.1/16"}
	if _, err := n.Parse(); err == nil || !strings.Contains(err.Error(), "--global-cidr") {
		t.Errorf("Parse() with a non-canonical global CIDR = %v, want an error naming --global-cidr", err)
	}
}

func TestBrokerRESTConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := component.BrokerOptions{SecretDir: dir, Namespace: "submariner-k8s-broker"}
	if _, err := b.RESTConfig(); err == nil || !strings.Contains(err.Error(), "server") {
		t.Errorf("RESTConfig() without files = %v, want an error naming the missing server file", err)
	}
	write("server", "http://broker.example:6443\n")
	write("ca.crt", "-----BEGIN CERTIFICATE-----\n")
	write("token", "t0ken\n")
	if _, err := b.RESTConfig(); err == nil || !strings.Contains(err.Error(), "https://") {
		t.Errorf("RESTConfig() with an http URL = %v, want an error asking for https", err)
	}
	write("server", "https://broker.example:6443\n")
	cfg, err := b.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://broker.example:6443" || cfg.BearerTokenFile != filepath.Join(dir, "token") || string(cfg.CAData) != "-----BEGIN CERTIFICATE-----" {
		t.Errorf("RESTConfig() = host %q, token file %q, CA %q", cfg.Host, cfg.BearerTokenFile, cfg.CAData)
	}
}

func TestReadyz(t *testing.T) {
	rt := &component.Runtime{}
	rt.SetReady(errors.New("waiting for the leader lease"))
	srv := httptest.NewServer(rt.Handler())
	defer srv.Close()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the leader lease") {
		t.Errorf("/readyz while not ready = %d %q", code, body)
	}
	rt.SetReady(nil)
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d, want 200", code)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d, want 200 with the Go collector's metrics", code)
	}
}

func TestRunPrintsVersion(t *testing.T) {
	var out bytes.Buffer
	called := false
	err := component.Run("submariner-gateway", &component.Options{ShowVersion: true}, &out, func(context.Context, *component.Runtime) error {
		called = true
		return nil
	})
	if err != nil || called || out.String() != "submariner-gateway "+component.Version+"\n" {
		t.Errorf("Run(--version) = %v, called=%v, printed %q", err, called, out.String())
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/submariner-go/submariner/e2e/sandbox"
)

func TestExecArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		dash int
		want *execOptions
		err  string
	}{
		{
			name: "command after --", args: []string{"cluster1", "kube-system/coredns-abc", "dig", "+short", "x"}, dash: 2,
			want: &execOptions{cluster: "cluster1", namespace: "kube-system", pod: "coredns-abc", command: []string{"dig", "+short", "x"}},
		},
		{name: "no --", args: []string{"cluster1", "ns/pod", "true"}, dash: -1, err: "the command goes after --"},
		{name: "-- too early", args: []string{"cluster1", "ns/pod", "true"}, dash: 1, err: "usage: sandbox exec CLUSTER NAMESPACE/POD -- CMD"},
		{name: "no command", args: []string{"cluster1", "ns/pod"}, dash: 2, err: "usage: sandbox exec"},
		{name: "pod without namespace", args: []string{"cluster1", "pod", "true"}, dash: 2, err: `pod "pod": give it as NAMESPACE/POD`},
		{name: "empty namespace", args: []string{"cluster1", "/pod", "true"}, dash: 2, err: `pod "/pod": give it as NAMESPACE/POD`},
		{name: "too many slashes", args: []string{"cluster1", "a/b/c", "true"}, dash: 2, err: `pod "a/b/c": give it as NAMESPACE/POD`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &execOptions{}
			err := o.Complete(tc.args, tc.dash)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Complete error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, o, cmp.AllowUnexported(execOptions{})); diff != "" {
				t.Errorf("Complete (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpFlags parses `up`'s flags into options, which render back as the same
// flags for the supervisor.
func TestUpFlags(t *testing.T) {
	args := []string{"--clusters=3", "--workers-per-cluster=0", "--overlapping-cidrs=true", "--state-dir=/s", "--bin-dir=/b", "--k8s-bin-dir=/k"}
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	o := newUpOptions()
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(args, o.Args()); diff != "" {
		t.Errorf("flags rendered back (-want +got):\n%s", diff)
	}
	def := newUpOptions()
	if def.Clusters != 2 || def.WorkersPerCluster != 1 || def.StateDir != sandbox.DefaultStateDir {
		t.Errorf("defaults %+v, want 2 clusters, 1 worker, state in %s", def.Options, sandbox.DefaultStateDir)
	}
}

func TestHelpNamesEveryCommand(t *testing.T) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"up", "down", "status", "kubeconfig", "exec"} {
		if !strings.Contains(out.String(), "  "+c+" ") {
			t.Errorf("--help does not list %s:\n%s", c, out.String())
		}
	}
	if strings.Contains(out.String(), "supervise") {
		t.Errorf("--help lists the hidden supervise command:\n%s", out.String())
	}
}

package progress_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/subctl/progress"
)

// TestPlain checks the output off a terminal: one line per step and per status
// change, nothing animated.
func TestPlain(t *testing.T) {
	var out bytes.Buffer
	r := progress.New(&out)
	if err := r.Run("Waiting for the CRDs to be established", func(*progress.Step) error { return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := r.Run("Waiting for the cleanup pods", func(s *progress.Step) error {
		s.Update("1/3 nodes")
		s.Update("1/3 nodes") // unchanged: not repeated
		s.Update("2/3 nodes")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Run returned %v, want the step's error", err)
	}
	r.Warn("no node is labelled %s", "submariner.io/gateway=true")
	r.Info("global CIDR %s", "242.0.0.0/16")
	want := "✓ Waiting for the CRDs to be established\n" +
		"  Waiting for the cleanup pods: 1/3 nodes\n" +
		"  Waiting for the cleanup pods: 2/3 nodes\n" +
		"✗ Waiting for the cleanup pods\n" +
		"⚠ no node is labelled submariner.io/gateway=true\n" +
		"  global CIDR 242.0.0.0/16\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

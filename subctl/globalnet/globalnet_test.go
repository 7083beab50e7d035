package globalnet_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/subctl/globalnet"
)

func info(clusters ...string) globalnet.Info {
	i := globalnet.Info{Enabled: true, CIDRRange: netip.MustParsePrefix("242.0.0.0/8"), ClusterSize: 65536}
	for _, c := range clusters {
		id, cidr, _ := strings.Cut(c, "=")
		i.Clusters = append(i.Clusters, globalnet.Allocation{ClusterID: id, GlobalCIDRs: []string{cidr}})
	}
	return i
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name      string
		info      globalnet.Info
		cluster   string
		requested string
		size      int
		want      string
		wantErr   string
	}{
		{name: "first cluster gets the first block", info: info(), cluster: "c1", want: "242.0.0.0/16"},
		{name: "next free block", info: info("c1=242.0.0.0/16", "c2=242.1.0.0/16"), cluster: "c3", want: "242.2.0.0/16"},
		{name: "a gap is reused", info: info("c1=242.0.0.0/16", "c3=242.2.0.0/16"), cluster: "c2", want: "242.1.0.0/16"},
		{name: "blocks are aligned past a smaller allocation", info: info("c1=242.0.0.0/24"), cluster: "c2", want: "242.1.0.0/16"},
		{name: "a smaller size packs", info: info("c1=242.0.0.0/24"), cluster: "c2", size: 256, want: "242.0.1.0/24"},
		{name: "re-join keeps its block", info: info("c1=242.0.0.0/16", "c2=242.5.0.0/16"), cluster: "c2", want: "242.5.0.0/16"},
		{name: "re-join with a new size moves", info: info("c1=242.0.0.0/16", "c2=242.5.0.0/16"), cluster: "c2", size: 256, want: "242.1.0.0/24"},
		{name: "requested block", info: info("c1=242.0.0.0/16"), cluster: "c2", requested: "10.99.0.0/16", want: "10.99.0.0/16"},
		{name: "requested block replaces the old one", info: info("c1=242.0.0.0/16", "c2=242.1.0.0/16"), cluster: "c2", requested: "242.7.0.0/16", want: "242.7.0.0/16"},
		{name: "requested block overlaps another cluster", info: info("c1=242.0.0.0/16"), cluster: "c2", requested: "242.0.128.0/17",
			wantErr: "global CIDR 242.0.128.0/17 overlaps cluster c1's global CIDR 242.0.0.0/16: choose another --globalnet-cidr, or leave it out to have one allocated"},
		{name: "range full", info: globalnet.Info{Enabled: true, CIDRRange: netip.MustParsePrefix("242.0.0.0/15"), ClusterSize: 65536,
			Clusters: info("c1=242.0.0.0/16", "c2=242.1.0.0/16").Clusters}, cluster: "c3",
			wantErr: "the Globalnet range 242.0.0.0/15 has no free block of 65536 addresses left"},
		{name: "size not a power of two", info: info(), cluster: "c1", size: 1000, wantErr: "Globalnet cluster size 1000 is not a power of two: use 512 or 1024"},
		{name: "globalnet off", info: globalnet.Info{}, cluster: "c1", wantErr: "Globalnet is not enabled on the broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req netip.Prefix
			if tc.requested != "" {
				req = netip.MustParsePrefix(tc.requested)
			}
			got, next, err := globalnet.Plan(tc.info, tc.cluster, req, tc.size)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			found := false
			for _, a := range next.Clusters {
				if a.ClusterID == tc.cluster {
					found = true
					if diff := cmp.Diff([]string{tc.want}, a.GlobalCIDRs); diff != "" {
						t.Errorf("recorded allocation (-want +got):\n%s", diff)
					}
				}
			}
			if !found {
				t.Errorf("the new Info does not record %s", tc.cluster)
			}
		})
	}
}

// TestPlanNeverOverlaps allocates, releases and re-requests at random and checks
// after every step that no two clusters share an address.
func TestPlanNeverOverlaps(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cur := globalnet.Info{Enabled: true, CIDRRange: netip.MustParsePrefix("242.0.0.0/16"), ClusterSize: 4096}
	sizes := []int{0, 256, 1024, 4096, 8192}
	for step := 0; step < 2000; step++ {
		id := fmt.Sprintf("c%d", r.IntN(24))
		switch r.IntN(4) {
		case 0:
			cur = globalnet.Release(cur, id)
		default:
			_, next, err := globalnet.Plan(cur, id, netip.Prefix{}, sizes[r.IntN(len(sizes))])
			if err != nil {
				if !strings.Contains(err.Error(), "no free block") {
					t.Fatalf("step %d: %v", step, err)
				}
				continue
			}
			cur = next
		}
		var all []netip.Prefix
		for _, a := range cur.Clusters {
			p := netip.MustParsePrefix(a.GlobalCIDRs[0])
			if !cur.CIDRRange.Contains(p.Addr()) {
				t.Fatalf("step %d: %s got %s outside the range %s", step, a.ClusterID, p, cur.CIDRRange)
			}
			if p.Masked() != p {
				t.Fatalf("step %d: %s got the unaligned block %s", step, a.ClusterID, p)
			}
			for _, o := range all {
				if o.Overlaps(p) {
					t.Fatalf("step %d: %s got %s, which overlaps %s", step, a.ClusterID, p, o)
				}
			}
			all = append(all, p)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct{ in, wantErr string }{
		{"242.0.0.0/8", ""},
		{"10.0.0.0/8", ""},
		{"242.0.0.1/8", "has host bits set: did you mean 242.0.0.0/8?"},
		{"fd00::/8", "is not IPv4"},
		{"127.0.0.0/16", "overlaps 127.0.0.0/8 (loopback)"},
		{"169.254.0.0/16", "overlaps 169.254.0.0/16 (link-local, which EndpointSlices reject)"},
		{"224.0.0.0/8", "overlaps 224.0.0.0/4 (multicast)"},
		{"0.0.0.0/0", "overlaps 0.0.0.0/8"},
		{"nonsense", `"nonsense" is not a CIDR`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := globalnet.ParseRange(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestPrefixBits(t *testing.T) {
	for size, want := range map[int]int{4: 30, 256: 24, 65536: 16, 1 << 24: 8} {
		if got, err := globalnet.PrefixBits(size); err != nil || got != want {
			t.Errorf("PrefixBits(%d) = %d, %v; want %d", size, got, err, want)
		}
	}
	for _, size := range []int{0, 3, 100, 65535} {
		if _, err := globalnet.PrefixBits(size); err == nil {
			t.Errorf("PrefixBits(%d) accepted a size that is not a power of two of at least 4", size)
		}
	}
}

func TestInfoData(t *testing.T) {
	in := info("c2=242.1.0.0/16", "c1=242.0.0.0/16")
	data := in.Data()
	want := map[string]string{
		globalnet.KeyEnabled:     "true",
		globalnet.KeyCIDRRange:   "242.0.0.0/8",
		globalnet.KeyClusterSize: "65536",
		globalnet.KeyClusterInfo: `[{"cluster_id":"c1","global_cidr":["242.0.0.0/16"]},{"cluster_id":"c2","global_cidr":["242.1.0.0/16"]}]`,
	}
	if diff := cmp.Diff(want, data); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	back, err := globalnet.ParseInfo(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(info("c1=242.0.0.0/16", "c2=242.1.0.0/16"), back, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("parsed back (-want +got):\n%s", diff)
	}
	if _, err := globalnet.ParseInfo(map[string]string{globalnet.KeyEnabled: "yes"}); err == nil {
		t.Error("ParseInfo accepted globalnetEnabled=yes")
	}
	var conflict *globalnet.ConflictError
	_, _, err = globalnet.Plan(back, "c3", netip.MustParsePrefix("242.1.0.0/24"), 0)
	if !errors.As(err, &conflict) || conflict.ClusterID != "c2" {
		t.Errorf("Plan with an overlapping request: %v, want a ConflictError naming c2", err)
	}
}

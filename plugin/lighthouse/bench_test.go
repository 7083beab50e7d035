package lighthouse

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// benchServices is the number of imported services of the benchmarks, the scale of
// the DNS throughput target.
const benchServices = 10000

// benchObjects returns n services in namespace bench of every kind the benchmarks
// ask for, as the lighthouse agent would publish them for three clusters:
//
//	local-I     ClusterSetIP, exported by cluster1 (local) and cluster2
//	remote-I    ClusterSetIP, exported by cluster2 and cluster3 (round-robin)
//	vip-I       ClusterSetIP with a clusterset IP
//	headless-I  headless, 3 ready endpoints in cluster2 and 2 in cluster3
//
// with I in 0..n/4-1.
func benchObjects(n int) []k8sruntime.Object {
	objs := []k8sruntime.Object{gatewayObj("gw", true, map[string]submv1.ConnectionStatus{
		"cluster2": submv1.Connected, "cluster3": submv1.Connected,
	})}
	ports := []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 80)}
	ip := func(cluster, i, host int) string {
		return fmt.Sprintf("10.%d.%d.%d", cluster*16+i/(256*256/8), i/32%256, i%32*8+host)
	}
	for i := range n / 4 {
		name := func(kind string) string { return fmt.Sprintf("%s-%d", kind, i) }
		objs = append(objs,
			clusterSetIPImport("bench", name("local"), nil, importPort("http", corev1.ProtocolTCP, 80)),
			epSlice("bench", name("local"), "cluster1", name("local")+"-c1", false, ports, ep{addrs: []string{ip(1, i, 0)}}),
			epSlice("bench", name("local"), "cluster2", name("local")+"-c2", false, ports, ep{addrs: []string{ip(2, i, 0)}}),
			clusterSetIPImport("bench", name("remote"), nil, importPort("http", corev1.ProtocolTCP, 80)),
			epSlice("bench", name("remote"), "cluster2", name("remote")+"-c2", false, ports, ep{addrs: []string{ip(2, i, 1)}}),
			epSlice("bench", name("remote"), "cluster3", name("remote")+"-c3", false, ports, ep{addrs: []string{ip(3, i, 1)}}),
			clusterSetIPImport("bench", name("vip"), []string{fmt.Sprintf("243.%d.%d.1", i/256, i%256)}, importPort("http", corev1.ProtocolTCP, 80)),
			epSlice("bench", name("vip"), "cluster2", name("vip")+"-c2", false, ports, ep{addrs: []string{ip(2, i, 2)}}),
			headlessImport("bench", name("headless"), importPort("http", corev1.ProtocolTCP, 80)),
			epSlice("bench", name("headless"), "cluster2", name("headless")+"-c2", true, ports,
				ep{hostname: "h-0", addrs: []string{ip(2, i, 3)}}, ep{hostname: "h-1", addrs: []string{ip(2, i, 4)}}, ep{hostname: "h-2", addrs: []string{ip(2, i, 5)}}),
			epSlice("bench", name("headless"), "cluster3", name("headless")+"-c3", true, ports,
				ep{hostname: "h-0", addrs: []string{ip(3, i, 3)}}, ep{hostname: "h-1", addrs: []string{ip(3, i, 4)}}),
		)
	}
	return objs
}

// BenchmarkServeDNS measures the plugin's handler alone (no packing, no network)
// with 10,000 imported services, cycling through the services' names.
func BenchmarkServeDNS(b *testing.B) {
	lh := newTestLighthouse(newFakeController(b, localCluster, benchObjects(benchServices)...))
	per := benchServices / 4
	for _, bc := range []struct {
		name   string
		format string
		qtype  uint16
		rcode  int
	}{
		{"A local", "local-%d.bench.svc.clusterset.local.", dns.TypeA, dns.RcodeSuccess},
		{"A round-robin", "remote-%d.bench.svc.clusterset.local.", dns.TypeA, dns.RcodeSuccess},
		{"A clusterset IP", "vip-%d.bench.svc.clusterset.local.", dns.TypeA, dns.RcodeSuccess},
		{"AAAA NODATA", "local-%d.bench.svc.clusterset.local.", dns.TypeAAAA, dns.RcodeSuccess},
		{"SRV", "_http._tcp.local-%d.bench.svc.clusterset.local.", dns.TypeSRV, dns.RcodeSuccess},
		{"headless A", "headless-%d.bench.svc.clusterset.local.", dns.TypeA, dns.RcodeSuccess},
		{"headless SRV", "_http._tcp.headless-%d.bench.svc.clusterset.local.", dns.TypeSRV, dns.RcodeSuccess},
		{"endpoint A", "h-1.cluster3.headless-%d.bench.svc.clusterset.local.", dns.TypeA, dns.RcodeSuccess},
		{"NXDOMAIN", "missing-%d.bench.svc.clusterset.local.", dns.TypeA, dns.RcodeNameError},
	} {
		msgs := make([]*dns.Msg, per)
		for i := range msgs {
			msgs[i] = (&test.Case{Qname: fmt.Sprintf(bc.format, i), Qtype: bc.qtype}).Msg()
		}
		// Check once that the benchmark measures real answers.
		w := &capture{}
		if _, err := lh.ServeDNS(context.Background(), w, msgs[per-1]); err != nil || w.msg == nil || w.msg.Rcode != bc.rcode ||
			(bc.rcode == dns.RcodeSuccess && bc.qtype != dns.TypeAAAA && len(w.msg.Answer) == 0) {
			b.Fatalf("%s: response %v, error %v", bc.name, w.msg, err)
		}
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			w := &test.ResponseWriter{}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := lh.ServeDNS(ctx, w, msgs[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == per {
					i = 0
				}
			}
		})
		b.Run(bc.name+" parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				w := &test.ResponseWriter{}
				i := 0
				for pb.Next() {
					if _, err := lh.ServeDNS(ctx, w, msgs[i]); err != nil {
						b.Error(err)
						return
					}
					if i++; i == per {
						i = 0
					}
				}
			})
		})
	}
}

// capture is a ResponseWriter that keeps the message written.
type capture struct {
	test.ResponseWriter
	msg *dns.Msg
}

func (c *capture) WriteMsg(m *dns.Msg) error { c.msg = m; return nil }

// BenchmarkMemory reports the heap the plugin keeps per imported service: the
// stripped objects the informers store plus the view, with every string they hold.
// Of the 10,000 services here a quarter each are local, remote, clusterset-IP and
// headless; they have 2.25 EndpointSlices on average, with 1 to 3 endpoints.
func BenchmarkMemory(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		objs := benchObjects(benchServices)
		stripped := make([]any, 0, len(objs))
		for _, o := range objs {
			s, err := strip(o)
			if err != nil {
				b.Fatal(err)
			}
			stripped = append(stripped, s)
		}
		x := buildIndex(localCluster, stripped)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchServices, "heap-B/service")
		runtime.KeepAlive(stripped)
		runtime.KeepAlive(x)
	}
}

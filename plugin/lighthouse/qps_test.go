//go:build qps

package lighthouse

// BenchmarkQPS compares, over loopback with dnsperf, the peak throughput of a real
// CoreDNS serving clusterset.local with lighthouse and with the in-tree
// `kubernetes ... { multicluster clusterset.local }`, on the same 10,000 imported
// services in a real API server. It is behind the qps build tag because it needs
// dnsperf, takes minutes to load the data, and links the kubernetes plugin:
//
//	go test -tags qps -run XXX -bench QPS -benchtime 1x ./plugin/lighthouse/

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/coredns/coredns/plugin/kubernetes" // the reference
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/e2e/controlplane"
)

const (
	qpsServices   = 10000
	qpsNamespaces = 10
	qpsSeconds    = 10
)

func freeUDPPort(b *testing.B) string {
	b.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	return port
}

var qpsRE = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
var lostRE = regexp.MustCompile(`Queries lost:\s+(\d+)`)

func dnsperf(b *testing.B, port, data string) (qps float64, out string) {
	b.Helper()
	cmd := exec.Command("dnsperf", "-s", "127.0.0.1", "-p", port, "-d", data, "-l", strconv.Itoa(qpsSeconds), "-c", "4", "-q", "200")
	o, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("dnsperf: %v\n%s", err, o)
	}
	m := qpsRE.FindSubmatch(o)
	if m == nil {
		b.Fatalf("no QPS in dnsperf output:\n%s", o)
	}
	qps, _ = strconv.ParseFloat(string(m[1]), 64)
	return qps, string(o)
}

func BenchmarkQPS(b *testing.B) {
	if _, err := exec.LookPath("dnsperf"); err != nil {
		b.Skip("skipped: dnsperf is not installed")
	}
	p := controlplane.Start(b, "qps")[0]
	cfg := rest.CopyConfig(p.Config)
	cfg.QPS, cfg.Burst = 2000, 4000
	cl, err := client.New(cfg, client.Options{Scheme: controlplane.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	for n := range qpsNamespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%d", n)}}
		if err := cl.Create(ctx, ns); err != nil {
			b.Fatal(err)
		}
	}
	web := []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 80)}
	work := make(chan int)
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	for range 16 {
		wg.Go(func() {
			for i := range work {
				ns, name := fmt.Sprintf("ns-%d", i%qpsNamespaces), fmt.Sprintf("svc-%d", i)
				vip := fmt.Sprintf("243.0.%d.%d", i/256, i%256)
				for _, o := range []client.Object{
					clusterSetIPImport(ns, name, []string{vip}, importPort("http", corev1.ProtocolTCP, 80)),
					epSlice(ns, name, "cluster1", name+"-c1", false, web, ep{addrs: []string{fmt.Sprintf("10.1.%d.%d", i/256, i%256)}}),
				} {
					if err := cl.Create(ctx, o); err != nil {
						mu.Lock()
						failed = err
						mu.Unlock()
					}
				}
			}
		})
	}
	for i := range qpsServices {
		work <- i
	}
	close(work)
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
	b.Logf("created %d services in %v", qpsServices, time.Since(start).Round(time.Second))

	lhPort, k8sPort := freeUDPPort(b), freeUDPPort(b)
	startCoreDNS(b, fmt.Sprintf(`clusterset.local:%s {
		bind 127.0.0.1
		lighthouse {
			kubeconfig %s
			cluster-id cluster1
		}
	}
	clusterset.local:%s {
		bind 127.0.0.1
		kubernetes cluster.local clusterset.local {
			kubeconfig %s
			multicluster clusterset.local
		}
	}`, lhPort, p.Kubeconfig, k8sPort, p.Kubeconfig))

	last := fmt.Sprintf("svc-%d.ns-%d.svc.clusterset.local.", qpsServices-1, (qpsServices-1)%qpsNamespaces)
	lastVIP := fmt.Sprintf("243.0.%d.%d", (qpsServices-1)/256, (qpsServices-1)%256)
	for _, port := range []string{lhPort, k8sPort} {
		want := fmt.Sprintf("NOERROR aa=true tc=false\nanswer: %s 5 IN A %s\n", last, lastVIP)
		eventually(b, "the last service on port "+port, want, func() string {
			return exchange(b, "udp", "127.0.0.1:"+port, last, dns.TypeA)
		})
	}

	var data strings.Builder
	for i := range qpsServices {
		fmt.Fprintf(&data, "svc-%d.ns-%d.svc.clusterset.local A\n", i, i%qpsNamespaces)
	}
	file := filepath.Join(b.TempDir(), "queries")
	if err := os.WriteFile(file, []byte(data.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var lh, k8s []float64
		for range 2 {
			q, out := dnsperf(b, lhPort, file)
			lh = append(lh, q)
			b.Logf("lighthouse: %.0f QPS, lost %s", q, lostRE.FindStringSubmatch(out)[1])
			q, out = dnsperf(b, k8sPort, file)
			k8s = append(k8s, q)
			b.Logf("kubernetes multicluster: %.0f QPS, lost %s", q, lostRE.FindStringSubmatch(out)[1])
		}
		best := func(v []float64) float64 { return max(v[0], v[1]) }
		b.ReportMetric(best(lh), "lighthouse-QPS")
		b.ReportMetric(best(k8s), "kubernetes-QPS")
		b.ReportMetric(best(lh)/best(k8s), "ratio")
	}
}

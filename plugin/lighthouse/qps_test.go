//go:build qps

package lighthouse

// BenchmarkQPS compares, over loopback with dnsperf, the built CoreDNS
// (_output/bin/coredns, one process each, as in a cluster) serving
// clusterset.local with lighthouse and with the in-tree `kubernetes ... {
// multicluster clusterset.local }`, on the same 10,000 imported services in a
// real API server: peak throughput, p99 latency at half the reference's peak,
// and resident memory. It is behind the qps build tag because it needs dnsperf
// and takes minutes to load the data:
//
//	make build && go test -tags qps -run XXX -bench QPS -benchtime 1x ./plugin/lighthouse/

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// latencyP99 runs dnsperf at a fixed rate with per-query reports (-v) and
// returns the 99th percentile latency in milliseconds and the answered count.
// The reports go to a file, read afterwards: CoreDNS runs in this process, which
// must not spend the measurement reading and buffering dnsperf's output.
func latencyP99(b *testing.B, port, data string, rate float64) (p99 float64, answered int) {
	b.Helper()
	out, err := os.Create(filepath.Join(b.TempDir(), "dnsperf-"+port+".out"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("dnsperf", "-s", "127.0.0.1", "-p", port, "-d", data, "-l", strconv.Itoa(qpsSeconds),
		"-c", "4", "-q", "200", "-Q", strconv.Itoa(int(rate)), "-v")
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	o, rerr := os.ReadFile(out.Name())
	if err != nil || rerr != nil {
		b.Fatalf("dnsperf: %v %v\n%.2000s", err, rerr, o)
	}
	var lat []float64
	for _, line := range strings.Split(string(o), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[0] == ">" {
			if v, err := strconv.ParseFloat(f[4], 64); err == nil {
				lat = append(lat, v*1000)
			}
		}
	}
	if len(lat) == 0 {
		b.Fatalf("no per-query latencies in dnsperf -v output:\n%.2000s", o)
	}
	slices.Sort(lat)
	return lat[(len(lat)*99)/100], len(lat)
}

// builtCoreDNS is the CoreDNS binary that `make build` writes, from this
// package's directory.
const builtCoreDNS = "../../_output/bin/coredns"

// deployedGOGC is the GOGC of the lighthouse CoreDNS Deployment.
const deployedGOGC = "400"

// builtServer is the built CoreDNS running as its own process, as it runs in a
// cluster.
type builtServer struct {
	port string
	pid  int
}

// startBuilt starts the built CoreDNS with one server block (a %s for the port)
// and waits until it answers name with want; it stops when the benchmark ends.
// Without the binary the benchmark is skipped: `make bench` builds it first.
func startBuilt(b *testing.B, block, name, want string) builtServer {
	b.Helper()
	bin, err := filepath.Abs(builtCoreDNS)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Skipf("skipped: %s is not built (make build)", bin)
	}
	port := freeUDPPort(b)
	conf := filepath.Join(b.TempDir(), "Corefile-"+port)
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(block, port)), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-conf", conf)
	// As the lighthouse CoreDNS Deployment runs it (manifests/base/
	// lighthouse-coredns); the reference gets the same.
	cmd.Env = append(os.Environ(), "GOGC="+deployedGOGC)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Until it listens and has synced, a query fails or gets SERVFAIL.
	eventually(b, "the last service in the built CoreDNS", want, func() string {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		resp, _, err := (&dns.Client{Net: "udp", Timeout: time.Second}).Exchange(m, "127.0.0.1:"+port)
		if err != nil {
			return err.Error()
		}
		return responseText(resp)
	})
	return builtServer{port: port, pid: cmd.Process.Pid}
}

// residentMiB is the resident memory (VmRSS) of the process pid in MiB.
func residentMiB(b *testing.B, pid int) float64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	m := vmRSSRE.FindSubmatch(status)
	if m == nil {
		b.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024
}

var vmRSSRE = regexp.MustCompile(`VmRSS:\s+(\d+) kB`)

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

	// Each CoreDNS runs as its own process of the built binary, as in a cluster,
	// with the same 10,000 services: one with lighthouse, one with the in-tree
	// multicluster option. Their resident memory is read once they have synced.
	last := fmt.Sprintf("svc-%d.ns-%d.svc.clusterset.local.", qpsServices-1, (qpsServices-1)%qpsNamespaces)
	lastVIP := fmt.Sprintf("243.0.%d.%d", (qpsServices-1)/256, (qpsServices-1)%256)
	want := fmt.Sprintf("NOERROR aa=true tc=false\nanswer: %s 5 IN A %s\n", last, lastVIP)
	lh := startBuilt(b, `clusterset.local:%s {
		bind 127.0.0.1
		lighthouse {
			kubeconfig `+p.Kubeconfig+`
			cluster-id cluster1
		}
	}`, last, want)
	k8sSrv := startBuilt(b, `clusterset.local:%s {
		bind 127.0.0.1
		kubernetes cluster.local clusterset.local {
			kubeconfig `+p.Kubeconfig+`
			multicluster clusterset.local
		}
	}`, last, want)
	time.Sleep(2 * time.Second) // let the start-up garbage be collected
	lhRSS, k8sRSS := residentMiB(b, lh.pid), residentMiB(b, k8sSrv.pid)
	lhPort, k8sPort := lh.port, k8sSrv.port

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
		// Latency at a fixed load of half the reference's peak, for both.
		half := best(k8s) / 2
		lhP99, lhN := latencyP99(b, lhPort, file, half)
		k8sP99, k8sN := latencyP99(b, k8sPort, file, half)
		b.Logf("at %.0f QPS: lighthouse p99 %.3f ms (%d answers), kubernetes multicluster p99 %.3f ms (%d answers)", half, lhP99, lhN, k8sP99, k8sN)
		b.ReportMetric(lhP99, "lighthouse-p99-ms@half")
		b.ReportMetric(lhRSS, "lighthouse-RSS-MiB")
		b.ReportMetric(k8sRSS, "kubernetes-RSS-MiB")
		b.ReportMetric(k8sP99, "kubernetes-p99-ms@half")
	}
}

package lighthouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// The clusterset of the handler tests, seen from cluster1:
//
//	cluster1  local
//	cluster2  tunnel connected
//	cluster3  tunnel in error (disconnected)
//	cluster4  tunnel connected
const localCluster = "cluster1"

func testObjects() []runtime.Object {
	http := slicePort("http", corev1.ProtocolTCP, 80)
	metrics := slicePort("metrics", corev1.ProtocolTCP, 9090)
	mysql := func(n int32) []discoveryv1.EndpointPort {
		return []discoveryv1.EndpointPort{slicePort("mysql", corev1.ProtocolTCP, n)}
	}
	unnamed := slicePort("", corev1.ProtocolTCP, 8080)
	web := []discoveryv1.EndpointPort{http, metrics}
	return []runtime.Object{
		gatewayObj("gw1", true, map[string]submv1.ConnectionStatus{
			"cluster2": submv1.Connected, "cluster3": submv1.ConnError, "cluster4": submv1.Connected,
		}),
		// A passive gateway's view does not count.
		gatewayObj("gw2", false, map[string]submv1.ConnectionStatus{"cluster3": submv1.Connected}),

		// nginx: exported by the local cluster and cluster2.
		clusterSetIPImport("demo", "nginx", nil,
			importPort("http", corev1.ProtocolTCP, 80), importPort("metrics", corev1.ProtocolTCP, 9090)),
		epSlice("demo", "nginx", "cluster1", "nginx-c1", false, web, ep{addrs: []string{"10.1.0.10"}}),
		epSlice("demo", "nginx", "cluster2", "nginx-c2", false, web, ep{addrs: []string{"10.2.0.10"}}),

		// single: one unnamed port, from cluster2 only.
		clusterSetIPImport("demo", "single", nil, importPort("", corev1.ProtocolTCP, 8080)),
		epSlice("demo", "single", "cluster2", "single-c2", false, []discoveryv1.EndpointPort{unnamed}, ep{addrs: []string{"10.2.0.50"}}),

		// remote: not ready locally; ready in cluster2, cluster3 (disconnected), cluster4.
		clusterSetIPImport("demo", "remote", nil, importPort("http", corev1.ProtocolTCP, 80)),
		epSlice("demo", "remote", "cluster1", "remote-c1", false, web[:1], ep{addrs: []string{"10.1.0.20"}, notReady: true}),
		epSlice("demo", "remote", "cluster2", "remote-c2", false, web[:1], ep{addrs: []string{"10.2.0.20"}}),
		epSlice("demo", "remote", "cluster3", "remote-c3", false, web[:1], ep{addrs: []string{"10.3.0.20"}}),
		epSlice("demo", "remote", "cluster4", "remote-c4", false, web[:1], ep{addrs: []string{"10.4.0.20"}}),

		// vip: a dual-stack clusterset IP.
		clusterSetIPImport("demo", "vip", []string{"243.0.0.1", "fd00:243::1"},
			importPort("https", corev1.ProtocolTCP, 443), importPort("dns", corev1.ProtocolUDP, 53)),
		epSlice("demo", "vip", "cluster2", "vip-c2", false,
			[]discoveryv1.EndpointPort{slicePort("https", corev1.ProtocolTCP, 443), slicePort("dns", corev1.ProtocolUDP, 53)},
			ep{addrs: []string{"10.2.0.30"}}),

		// vip4: an IPv4 clusterset IP; cluster2 has an IPv6 service address.
		clusterSetIPImport("demo", "vip4", []string{"243.0.0.2"}, importPort("http", corev1.ProtocolTCP, 80)),
		epSlice("demo", "vip4", "cluster2", "vip4-c2", false, web[:1], ep{addrs: []string{"fd00:2::60"}}),

		// dual: a dual-stack service in cluster2, one slice per family.
		clusterSetIPImport("demo", "dual", nil, importPort("http", corev1.ProtocolTCP, 80)),
		epSlice("demo", "dual", "cluster2", "dual-c2-v4", false, web[:1], ep{addrs: []string{"10.2.0.40"}}),
		epSlice("demo", "dual", "cluster2", "dual-c2-v6", false, web[:1], ep{addrs: []string{"fd00:2::40"}}),

		// down: only in the disconnected cluster3.
		clusterSetIPImport("demo", "down", nil, importPort("http", corev1.ProtocolTCP, 80)),
		epSlice("demo", "down", "cluster3", "down-c3", false, web[:1], ep{addrs: []string{"10.3.0.70"}}),

		// db: headless, StatefulSet-like, in three clusters; cluster2 maps the port
		// to another target port and is dual-stack.
		headlessImport("demo", "db", importPort("mysql", corev1.ProtocolTCP, 3306)),
		epSlice("demo", "db", "cluster1", "db-c1", true, mysql(3306),
			ep{hostname: "db-0", addrs: []string{"10.1.1.1"}},
			ep{addrs: []string{"10.1.1.2"}},
			ep{hostname: "db-2", addrs: []string{"10.1.1.3"}, notReady: true}),
		epSlice("demo", "db", "cluster2", "db-c2", true, mysql(3307), ep{hostname: "db-0", addrs: []string{"10.2.1.1"}}),
		epSlice("demo", "db", "cluster2", "db-c2-v6", true, mysql(3307), ep{hostname: "db-0", addrs: []string{"fd00:2::1:1"}}),
		epSlice("demo", "db", "cluster3", "db-c3", true, mysql(3306), ep{hostname: "db-0", addrs: []string{"10.3.1.1"}}),

		// pnr: headless, publishes not-ready addresses.
		headlessImport("demo", "pnr"),
		publishNotReady(epSlice("demo", "pnr", "cluster2", "pnr-c2", true, nil, ep{hostname: "pnr-0", addrs: []string{"10.2.2.1"}, notReady: true})),

		// empty: headless without a ready endpoint.
		headlessImport("demo", "empty", importPort("mysql", corev1.ProtocolTCP, 3306)),
		epSlice("demo", "empty", "cluster1", "empty-c1", true, mysql(3306), ep{hostname: "empty-0", addrs: []string{"10.1.3.1"}, notReady: true}),

		// only3: headless with endpoints only in the disconnected cluster3.
		headlessImport("demo", "only3"),
		epSlice("demo", "only3", "cluster3", "only3-c3", true, nil, ep{hostname: "x", addrs: []string{"10.3.3.1"}}),
	}
}

// soa is the SOA record the negative answers carry.
var soa = test.SOA(fmt.Sprintf("clusterset.local. 5 IN SOA ns.dns.clusterset.local. hostmaster.clusterset.local. %d 7200 1800 86400 5", testSerial))

// nodata is the authority section of an empty answer.
var nodata = []dns.RR{soa}

type dnsCase struct {
	name string
	test.Case
}

func nxdomain(name, qname string, qtype uint16) dnsCase {
	return dnsCase{name, test.Case{Qname: qname, Qtype: qtype, Rcode: dns.RcodeNameError, Ns: nodata}}
}

func noData(name, qname string, qtype uint16) dnsCase {
	return dnsCase{name, test.Case{Qname: qname, Qtype: qtype, Rcode: dns.RcodeSuccess, Ns: nodata}}
}

func answer(name, qname string, qtype uint16, answer []dns.RR, extra ...dns.RR) dnsCase {
	return dnsCase{name, test.Case{Qname: qname, Qtype: qtype, Rcode: dns.RcodeSuccess, Answer: answer, Extra: extra}}
}

func rrs(rr ...dns.RR) []dns.RR { return rr }

// specCases are the record forms of the MCS DNS specification (and its NXDOMAIN
// and NODATA answers), without the cluster-specific-names option.
var specCases = []dnsCase{
	// 2.2 Record for schema version
	answer("dns-version TXT", "dns-version.clusterset.local.", dns.TypeTXT,
		rrs(test.TXT(`dns-version.clusterset.local. 28800 IN TXT "1.0.0"`))),
	noData("dns-version A", "dns-version.clusterset.local.", dns.TypeA),

	// 2.3.1 ClusterSetIP A/AAAA: the local cluster exports nginx with a ready backend.
	answer("ClusterSetIP A prefers the local cluster", "nginx.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("nginx.demo.svc.clusterset.local. 5 IN A 10.1.0.10"))),
	noData("ClusterSetIP AAAA without IPv6", "nginx.demo.svc.clusterset.local.", dns.TypeAAAA),
	answer("clusterset IP A", "vip.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("vip.demo.svc.clusterset.local. 5 IN A 243.0.0.1"))),
	answer("clusterset IP AAAA", "vip.demo.svc.clusterset.local.", dns.TypeAAAA,
		rrs(test.AAAA("vip.demo.svc.clusterset.local. 5 IN AAAA fd00:243::1"))),
	noData("IPv4 clusterset IP, AAAA: no fallback to a cluster's address", "vip4.demo.svc.clusterset.local.", dns.TypeAAAA),
	answer("dual-stack A", "dual.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("dual.demo.svc.clusterset.local. 5 IN A 10.2.0.40"))),
	answer("dual-stack AAAA", "dual.demo.svc.clusterset.local.", dns.TypeAAAA,
		rrs(test.AAAA("dual.demo.svc.clusterset.local. 5 IN AAAA fd00:2::40"))),
	answer("remote-only service", "single.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("single.demo.svc.clusterset.local. 5 IN A 10.2.0.50"))),
	noData("only a disconnected cluster exports it", "down.demo.svc.clusterset.local.", dns.TypeA),

	// 2.3.2 ClusterSetIP SRV
	answer("SRV of a named port", "_http._tcp.nginx.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("_http._tcp.nginx.demo.svc.clusterset.local. 5 IN SRV 0 50 80 nginx.demo.svc.clusterset.local.")),
		test.A("nginx.demo.svc.clusterset.local. 5 IN A 10.1.0.10")),
	answer("SRV of the bare name: every named port", "nginx.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("nginx.demo.svc.clusterset.local. 5 IN SRV 0 50 80 nginx.demo.svc.clusterset.local."),
			test.SRV("nginx.demo.svc.clusterset.local. 5 IN SRV 0 50 9090 nginx.demo.svc.clusterset.local.")),
		test.A("nginx.demo.svc.clusterset.local. 5 IN A 10.1.0.10")),
	answer("SRV with a clusterset IP", "_dns._udp.vip.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("_dns._udp.vip.demo.svc.clusterset.local. 5 IN SRV 0 50 53 vip.demo.svc.clusterset.local.")),
		test.A("vip.demo.svc.clusterset.local. 5 IN A 243.0.0.1"),
		test.AAAA("vip.demo.svc.clusterset.local. 5 IN AAAA fd00:243::1")),
	noData("unnamed ports have no SRV record", "single.demo.svc.clusterset.local.", dns.TypeSRV),
	noData("SRV name, A query", "_http._tcp.nginx.demo.svc.clusterset.local.", dns.TypeA),
	noData("SRV of a service no connected cluster serves", "_http._tcp.down.demo.svc.clusterset.local.", dns.TypeSRV),
	nxdomain("SRV of an unknown port", "_nope._tcp.nginx.demo.svc.clusterset.local.", dns.TypeSRV),
	nxdomain("SRV of a port with another protocol", "_http._udp.nginx.demo.svc.clusterset.local.", dns.TypeSRV),
	noData("_PROTO.NAME is an empty non-terminal", "_tcp.nginx.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("_PROTO.NAME without such a port", "_sctp.nginx.demo.svc.clusterset.local.", dns.TypeA),

	// 2.3.4 / 2.4.4 Records that must not exist
	nxdomain("CLUSTERID.NAME of a ClusterSetIP service", "cluster1.nginx.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("CLUSTERID.NAME of a headless service", "cluster1.db.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("SRV under CLUSTERID.NAME", "_mysql._tcp.cluster1.db.demo.svc.clusterset.local.", dns.TypeSRV),
	nxdomain("HOSTNAME.CLUSTERID.NAME of a ClusterSetIP service", "x.cluster1.nginx.demo.svc.clusterset.local.", dns.TypeA),

	// 2.4.1 Headless A/AAAA: ready endpoints of the reachable clusters.
	answer("headless A", "db.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("db.demo.svc.clusterset.local. 5 IN A 10.1.1.1"),
			test.A("db.demo.svc.clusterset.local. 5 IN A 10.1.1.2"),
			test.A("db.demo.svc.clusterset.local. 5 IN A 10.2.1.1"))),
	answer("headless AAAA", "db.demo.svc.clusterset.local.", dns.TypeAAAA,
		rrs(test.AAAA("db.demo.svc.clusterset.local. 5 IN AAAA fd00:2::1:1"))),
	answer("per-endpoint A", "db-0.cluster1.db.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("db-0.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.1"))),
	answer("per-endpoint A of a remote cluster", "db-0.cluster2.db.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("db-0.cluster2.db.demo.svc.clusterset.local. 5 IN A 10.2.1.1"))),
	answer("per-endpoint AAAA", "db-0.cluster2.db.demo.svc.clusterset.local.", dns.TypeAAAA,
		rrs(test.AAAA("db-0.cluster2.db.demo.svc.clusterset.local. 5 IN AAAA fd00:2::1:1"))),
	answer("per-endpoint A, no hostname: dashed IP", "10-1-1-2.cluster1.db.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("10-1-1-2.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.2"))),
	noData("per-endpoint AAAA of an IPv4 endpoint", "db-0.cluster1.db.demo.svc.clusterset.local.", dns.TypeAAAA),
	noData("per-endpoint SRV", "db-0.cluster1.db.demo.svc.clusterset.local.", dns.TypeSRV),
	nxdomain("per-endpoint name of a not-ready endpoint", "db-2.cluster1.db.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("per-endpoint name in a disconnected cluster", "db-0.cluster3.db.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("per-endpoint name of an unknown host", "db-9.cluster1.db.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("per-endpoint name of an unknown cluster", "db-0.cluster9.db.demo.svc.clusterset.local.", dns.TypeA),
	answer("headless publishing not-ready addresses", "pnr.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("pnr.demo.svc.clusterset.local. 5 IN A 10.2.2.1"))),
	nxdomain("headless without ready endpoints: A", "empty.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("headless without ready endpoints: SRV", "_mysql._tcp.empty.demo.svc.clusterset.local.", dns.TypeSRV),
	nxdomain("headless without ready endpoints: endpoint", "empty-0.cluster1.empty.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("headless only in a disconnected cluster", "only3.demo.svc.clusterset.local.", dns.TypeA),
	noData("headless with endpoints, MX", "db.demo.svc.clusterset.local.", dns.TypeMX),

	// 2.4.2 Headless SRV: ready endpoints x named ports, each cluster's target port.
	answer("headless SRV", "_mysql._tcp.db.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("_mysql._tcp.db.demo.svc.clusterset.local. 5 IN SRV 0 50 3306 db-0.cluster1.db.demo.svc.clusterset.local."),
			test.SRV("_mysql._tcp.db.demo.svc.clusterset.local. 5 IN SRV 0 50 3306 10-1-1-2.cluster1.db.demo.svc.clusterset.local."),
			test.SRV("_mysql._tcp.db.demo.svc.clusterset.local. 5 IN SRV 0 50 3307 db-0.cluster2.db.demo.svc.clusterset.local.")),
		test.A("db-0.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.1"),
		test.A("10-1-1-2.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.2"),
		test.A("db-0.cluster2.db.demo.svc.clusterset.local. 5 IN A 10.2.1.1"),
		test.AAAA("db-0.cluster2.db.demo.svc.clusterset.local. 5 IN AAAA fd00:2::1:1")),
	answer("headless SRV of the bare name", "db.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("db.demo.svc.clusterset.local. 5 IN SRV 0 50 3306 db-0.cluster1.db.demo.svc.clusterset.local."),
			test.SRV("db.demo.svc.clusterset.local. 5 IN SRV 0 50 3306 10-1-1-2.cluster1.db.demo.svc.clusterset.local."),
			test.SRV("db.demo.svc.clusterset.local. 5 IN SRV 0 50 3307 db-0.cluster2.db.demo.svc.clusterset.local.")),
		test.A("db-0.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.1"),
		test.A("10-1-1-2.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.2"),
		test.A("db-0.cluster2.db.demo.svc.clusterset.local. 5 IN A 10.2.1.1"),
		test.AAAA("db-0.cluster2.db.demo.svc.clusterset.local. 5 IN AAAA fd00:2::1:1")),
	nxdomain("headless SRV of another protocol", "_mysql._udp.db.demo.svc.clusterset.local.", dns.TypeSRV),
	noData("headless _PROTO.NAME", "_tcp.db.demo.svc.clusterset.local.", dns.TypeA),

	// The names above the services.
	answer("SOA at the apex", "clusterset.local.", dns.TypeSOA, rrs(soa)),
	answer("SOA at the apex, mixed case", "ClusterSet.local.", dns.TypeSOA,
		rrs(test.SOA(fmt.Sprintf("ClusterSet.local. 5 IN SOA ns.dns.clusterset.local. hostmaster.clusterset.local. %d 7200 1800 86400 5", testSerial)))),
	noData("NS at the apex", "clusterset.local.", dns.TypeNS),
	noData("A at the apex", "clusterset.local.", dns.TypeA),
	noData("svc.ZONE", "svc.clusterset.local.", dns.TypeA),
	noData("NS.svc.ZONE of a namespace with imports", "demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("NS.svc.ZONE of a namespace without imports", "other.svc.clusterset.local.", dns.TypeA),
	nxdomain("service not exported", "nope.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("service of another namespace", "nginx.other.svc.clusterset.local.", dns.TypeA),
	nxdomain("SRV of a service not exported", "_http._tcp.nope.demo.svc.clusterset.local.", dns.TypeSRV),
	noData("TXT of a service", "nginx.demo.svc.clusterset.local.", dns.TypeTXT),
	noData("ANY of a service", "nginx.demo.svc.clusterset.local.", dns.TypeANY),

	// Odd names.
	nxdomain("not a svc name", "foo.clusterset.local.", dns.TypeA),
	nxdomain("pod names are not served", "10-1-1-1.demo.pod.clusterset.local.", dns.TypeA),
	nxdomain("too many labels", "a.b.c.d.nginx.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("too many labels for an SRV", "_a._http._tcp.nginx.demo.svc.clusterset.local.", dns.TypeSRV),
	nxdomain("a label in front of _PORT._PROTO", "x._http._tcp.nginx.demo.svc.clusterset.local.", dns.TypeSRV),
	nxdomain("_PORT in front of a cluster", "_http.cluster1._tcp.nginx.demo.svc.clusterset.local.", dns.TypeSRV),
	nxdomain("host in front of _PROTO", "x._tcp.nginx.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("empty label", "a..demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("label of 64 octets", strings.Repeat("a", 64)+".demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("huge name", strings.Repeat("a.", 120)+"nginx.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("escaped dot", `nginx\.demo.svc.clusterset.local.`, dns.TypeA),
	nxdomain("lone underscore", "_._tcp.nginx.demo.svc.clusterset.local.", dns.TypeSRV),
	answer("mixed case keeps the query's case", "NGINX.Demo.svc.ClusterSet.LOCAL.", dns.TypeA,
		rrs(test.A("NGINX.Demo.svc.ClusterSet.LOCAL. 5 IN A 10.1.0.10"))),
	answer("mixed case SRV", "_HTTP._Tcp.Nginx.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("_HTTP._Tcp.Nginx.demo.svc.clusterset.local. 5 IN SRV 0 50 80 Nginx.demo.svc.clusterset.local.")),
		test.A("Nginx.demo.svc.clusterset.local. 5 IN A 10.1.0.10")),
}

// clusterSpecificCases need the cluster-specific-names option.
var clusterSpecificCases = []dnsCase{
	answer("CLUSTER.NAME A", "cluster2.nginx.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("cluster2.nginx.demo.svc.clusterset.local. 5 IN A 10.2.0.10"))),
	answer("CLUSTER.NAME A of a disconnected cluster", "cluster3.down.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("cluster3.down.demo.svc.clusterset.local. 5 IN A 10.3.0.70"))),
	answer("CLUSTER.NAME A of a service with a clusterset IP", "cluster2.vip.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("cluster2.vip.demo.svc.clusterset.local. 5 IN A 10.2.0.30"))),
	noData("CLUSTER.NAME A of a cluster without a ready backend", "cluster1.remote.demo.svc.clusterset.local.", dns.TypeA),
	answer("CLUSTER.NAME SRV", "cluster2.nginx.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("cluster2.nginx.demo.svc.clusterset.local. 5 IN SRV 0 50 80 cluster2.nginx.demo.svc.clusterset.local."),
			test.SRV("cluster2.nginx.demo.svc.clusterset.local. 5 IN SRV 0 50 9090 cluster2.nginx.demo.svc.clusterset.local.")),
		test.A("cluster2.nginx.demo.svc.clusterset.local. 5 IN A 10.2.0.10")),
	answer("_PORT._PROTO.CLUSTER.NAME SRV", "_http._tcp.cluster2.nginx.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("_http._tcp.cluster2.nginx.demo.svc.clusterset.local. 5 IN SRV 0 50 80 cluster2.nginx.demo.svc.clusterset.local.")),
		test.A("cluster2.nginx.demo.svc.clusterset.local. 5 IN A 10.2.0.10")),
	noData("_PORT._PROTO.CLUSTER.NAME A", "_http._tcp.cluster2.nginx.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("_PORT._PROTO.CLUSTER.NAME of an unknown port", "_dns._udp.cluster2.nginx.demo.svc.clusterset.local.", dns.TypeSRV),
	noData("_PROTO.CLUSTER.NAME", "_tcp.cluster2.nginx.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("_PROTO.CLUSTER.NAME of another protocol", "_udp.cluster2.nginx.demo.svc.clusterset.local.", dns.TypeA),
	nxdomain("CLUSTER.NAME of a cluster not exporting it", "cluster9.nginx.demo.svc.clusterset.local.", dns.TypeA),
	answer("headless CLUSTER.NAME A", "cluster2.db.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("cluster2.db.demo.svc.clusterset.local. 5 IN A 10.2.1.1"))),
	answer("headless CLUSTER.NAME AAAA", "cluster2.db.demo.svc.clusterset.local.", dns.TypeAAAA,
		rrs(test.AAAA("cluster2.db.demo.svc.clusterset.local. 5 IN AAAA fd00:2::1:1"))),
	answer("headless CLUSTER.NAME SRV", "cluster1.db.demo.svc.clusterset.local.", dns.TypeSRV,
		rrs(test.SRV("cluster1.db.demo.svc.clusterset.local. 5 IN SRV 0 50 3306 db-0.cluster1.db.demo.svc.clusterset.local."),
			test.SRV("cluster1.db.demo.svc.clusterset.local. 5 IN SRV 0 50 3306 10-1-1-2.cluster1.db.demo.svc.clusterset.local.")),
		test.A("db-0.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.1"),
		test.A("10-1-1-2.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.2")),
	answer("headless CLUSTER.NAME of a disconnected cluster", "cluster3.db.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("cluster3.db.demo.svc.clusterset.local. 5 IN A 10.3.1.1"))),
	nxdomain("headless CLUSTER.NAME without ready endpoints", "cluster1.empty.demo.svc.clusterset.local.", dns.TypeA),
	// The specification's names are unchanged by the option.
	answer("NAME still prefers the local cluster", "nginx.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("nginx.demo.svc.clusterset.local. 5 IN A 10.1.0.10"))),
	answer("HOSTNAME.CLUSTER.NAME still answers", "db-0.cluster1.db.demo.svc.clusterset.local.", dns.TypeA,
		rrs(test.A("db-0.cluster1.db.demo.svc.clusterset.local. 5 IN A 10.1.1.1"))),
}

// newTestLighthouse is the plugin over ctrl in zone clusterset.local with a TTL of 5.
func newTestLighthouse(ctrl dnsController, mod ...func(*config)) *Lighthouse {
	cfg := &config{zones: []string{testZone}, ttl: 5, clusterID: localCluster}
	for _, m := range mod {
		m(cfg)
	}
	return newLighthouse(cfg, ctrl)
}

func TestServeDNS(t *testing.T) {
	lh := newTestLighthouse(newFakeController(t, localCluster, testObjects()...))
	runCases(t, lh, specCases)
}

func TestServeDNSClusterSpecificNames(t *testing.T) {
	lh := newTestLighthouse(newFakeController(t, localCluster, testObjects()...),
		func(c *config) { c.clusterSpecificNames = true })
	runCases(t, lh, clusterSpecificCases)
}

func runCases(t *testing.T, lh *Lighthouse, cases []dnsCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := serve(t, lh, tc.Msg())
			checkResponse(t, tc.Case, resp)
		})
	}
}

// serve sends m through the plugin and returns what it wrote.
func serve(t *testing.T, h *Lighthouse, m *dns.Msg) *dns.Msg {
	t.Helper()
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	rcode, err := h.ServeDNS(context.Background(), rec, m)
	if err != nil {
		t.Fatalf("ServeDNS(%s %s): %v", m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], err)
	}
	if rec.Msg == nil {
		t.Fatalf("ServeDNS(%s %s) wrote nothing and returned %s", m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], dns.RcodeToString[rcode])
	}
	return rec.Msg
}

// checkResponse checks resp against tc with CoreDNS's test.SortAndCheck and then,
// because that compares only some fields (not SOA contents, for one), compares every
// record's text; it also demands an authoritative answer to the question asked.
func checkResponse(t *testing.T, tc test.Case, resp *dns.Msg) {
	t.Helper()
	// SortAndCheck sorts the response, not the expectation.
	for _, sec := range []*[]dns.RR{&tc.Answer, &tc.Ns, &tc.Extra} {
		*sec = slices.Clone(*sec)
		sort.Sort(test.RRSet(*sec))
	}
	if err := test.SortAndCheck(resp, tc); err != nil {
		t.Error(err)
	}
	if !resp.Authoritative {
		t.Error("answer is not authoritative")
	}
	if len(resp.Question) != 1 || resp.Question[0].Name != dns.Fqdn(tc.Qname) || resp.Question[0].Qtype != tc.Qtype {
		t.Errorf("question is %v, want %s %s", resp.Question, tc.Qname, dns.TypeToString[tc.Qtype])
	}
	for _, sec := range []struct {
		name      string
		want, got []dns.RR
	}{{"answer", tc.Answer, resp.Answer}, {"authority", tc.Ns, resp.Ns}, {"additional", tc.Extra, resp.Extra}} {
		if diff := cmp.Diff(rrText(sec.want), rrText(sec.got)); diff != "" {
			t.Errorf("%s section (-want +got):\n%s", sec.name, diff)
		}
	}
}

func rrText(rrs []dns.RR) []string {
	out := make([]string, len(rrs))
	for i, rr := range rrs {
		out[i] = rr.String()
	}
	slices.Sort(out)
	return out
}

func TestServeDNSNotSynced(t *testing.T) {
	ctrl := newFakeController(t, localCluster, testObjects()...)
	ctrl.notSynced = true
	lh := newTestLighthouse(ctrl)
	if lh.Ready() {
		t.Error("Ready() = true before the informers synced")
	}
	for _, qname := range []string{"nginx.demo.svc.clusterset.local.", "nope.demo.svc.clusterset.local.", "dns-version.clusterset.local."} {
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		rcode, err := lh.ServeDNS(context.Background(), rec, (&test.Case{Qname: qname, Qtype: dns.TypeA}).Msg())
		if rcode != dns.RcodeServerFailure || !errors.Is(err, errNotSynced) {
			t.Errorf("%s: ServeDNS = %s, %v; want SERVFAIL, %v", qname, dns.RcodeToString[rcode], err, errNotSynced)
		}
		if rec.Msg != nil {
			t.Errorf("%s: wrote %v; the server writes the SERVFAIL", qname, rec.Msg)
		}
	}
	ctrl.notSynced = false
	if !lh.Ready() {
		t.Error("Ready() = false after the informers synced")
	}
	checkResponse(t, test.Case{Qname: "nginx.demo.svc.clusterset.local.", Qtype: dns.TypeA,
		Answer: rrs(test.A("nginx.demo.svc.clusterset.local. 5 IN A 10.1.0.10"))},
		serve(t, lh, (&test.Case{Qname: "nginx.demo.svc.clusterset.local.", Qtype: dns.TypeA}).Msg()))
}

// TestRoundRobin: without a ready local backend, queries take the connected
// clusters in turn and never the disconnected cluster3.
func TestRoundRobin(t *testing.T) {
	lh := newTestLighthouse(newFakeController(t, localCluster, testObjects()...))
	var got []string
	for range 6 {
		resp := serve(t, lh, (&test.Case{Qname: "remote.demo.svc.clusterset.local.", Qtype: dns.TypeA}).Msg())
		if len(resp.Answer) != 1 {
			t.Fatalf("answer %v, want one A record", resp.Answer)
		}
		got = append(got, resp.Answer[0].(*dns.A).A.String())
	}
	want := []string{"10.2.0.20", "10.4.0.20", "10.2.0.20", "10.4.0.20", "10.2.0.20", "10.4.0.20"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	// SRV queries take part in the same rotation, each answer naming one cluster.
	resp := serve(t, lh, (&test.Case{Qname: "_http._tcp.remote.demo.svc.clusterset.local.", Qtype: dns.TypeSRV}).Msg())
	checkResponse(t, test.Case{Qname: "_http._tcp.remote.demo.svc.clusterset.local.", Qtype: dns.TypeSRV,
		Answer: rrs(test.SRV("_http._tcp.remote.demo.svc.clusterset.local. 5 IN SRV 0 50 80 remote.demo.svc.clusterset.local.")),
		Extra:  rrs(test.A("remote.demo.svc.clusterset.local. 5 IN A 10.2.0.20"))}, resp)
}

// TestConnectivityChange: when cluster2's tunnel goes down and cluster3's comes up,
// the answers follow at once, without a rebuild of the services.
func TestConnectivityChange(t *testing.T) {
	ctrl := newFakeController(t, localCluster, testObjects()...)
	lh := newTestLighthouse(ctrl)
	ctrl.setConnectivity(false, []string{"cluster3"})
	runCases(t, lh, []dnsCase{
		answer("headless A", "db.demo.svc.clusterset.local.", dns.TypeA,
			rrs(test.A("db.demo.svc.clusterset.local. 5 IN A 10.1.1.1"),
				test.A("db.demo.svc.clusterset.local. 5 IN A 10.1.1.2"),
				test.A("db.demo.svc.clusterset.local. 5 IN A 10.3.1.1"))),
		answer("only cluster3 serves", "down.demo.svc.clusterset.local.", dns.TypeA,
			rrs(test.A("down.demo.svc.clusterset.local. 5 IN A 10.3.0.70"))),
		noData("cluster2 is gone", "dual.demo.svc.clusterset.local.", dns.TypeA),
		answer("headless in cluster3", "only3.demo.svc.clusterset.local.", dns.TypeA,
			rrs(test.A("only3.demo.svc.clusterset.local. 5 IN A 10.3.3.1"))),
		nxdomain("endpoint in cluster2", "db-0.cluster2.db.demo.svc.clusterset.local.", dns.TypeA),
	})
	// Without the Gateway API every cluster counts as connected.
	ctrl.setConnectivity(true, nil)
	runCases(t, lh, []dnsCase{
		answer("headless A", "db.demo.svc.clusterset.local.", dns.TypeA,
			rrs(test.A("db.demo.svc.clusterset.local. 5 IN A 10.1.1.1"),
				test.A("db.demo.svc.clusterset.local. 5 IN A 10.1.1.2"),
				test.A("db.demo.svc.clusterset.local. 5 IN A 10.2.1.1"),
				test.A("db.demo.svc.clusterset.local. 5 IN A 10.3.1.1"))),
	})
}

// nextWriter is a next plugin that answers every query with a TXT record "next".
func nextWriter() test.HandlerFunc {
	return func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"next"}}}
		return dns.RcodeSuccess, w.WriteMsg(m)
	}
}

func TestFallthrough(t *testing.T) {
	tests := []struct {
		name     string
		fall     []string // fallthrough zones; nil for no fallthrough
		qname    string
		wantNext bool
	}{
		{"NXDOMAIN falls through", []string{}, "nope.demo.svc.clusterset.local.", true},
		{"NXDOMAIN of a reserved name falls through", []string{}, "cluster1.nginx.demo.svc.clusterset.local.", true},
		{"NODATA does not", []string{}, "nginx.demo.svc.clusterset.local.", false},
		{"answers do not", []string{}, "db.demo.svc.clusterset.local.", false},
		{"only the listed zones fall through", []string{"other.local."}, "nope.demo.svc.clusterset.local.", false},
		{"listed zone", []string{"demo.svc.clusterset.local."}, "nope.demo.svc.clusterset.local.", true},
		{"without fallthrough", nil, "nope.demo.svc.clusterset.local.", false},
		{"names outside the zones always go on", nil, "example.org.", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lh := newTestLighthouse(newFakeController(t, localCluster, testObjects()...), func(c *config) {
				if tt.fall != nil {
					c.fall.SetZonesFromArgs(tt.fall)
				}
			})
			lh.Next = nextWriter()
			resp := serve(t, lh, (&test.Case{Qname: tt.qname, Qtype: dns.TypeA}).Msg())
			gotNext := len(resp.Answer) == 1 && resp.Answer[0].Header().Rrtype == dns.TypeTXT
			if gotNext != tt.wantNext {
				t.Errorf("went to the next plugin: %t, want %t (response %v)", gotNext, tt.wantNext, resp)
			}
		})
	}
}

func TestServeDNSSpecialQueries(t *testing.T) {
	lh := newTestLighthouse(newFakeController(t, localCluster, testObjects()...))
	lh.Next = nextWriter()

	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	rcode, err := lh.ServeDNS(context.Background(), rec, (&test.Case{Qname: "clusterset.local.", Qtype: dns.TypeAXFR}).Msg())
	if rcode != dns.RcodeRefused || err != nil || rec.Msg != nil {
		t.Errorf("AXFR: ServeDNS = %s, %v (wrote %v); want REFUSED for the server to write", dns.RcodeToString[rcode], err, rec.Msg)
	}

	chaos := (&test.Case{Qname: "nginx.demo.svc.clusterset.local.", Qtype: dns.TypeTXT}).Msg()
	chaos.Question[0].Qclass = dns.ClassCHAOS
	if resp := serve(t, lh, chaos); len(resp.Answer) != 1 || resp.Answer[0].(*dns.TXT).Txt[0] != "next" {
		t.Errorf("CHAOS class query: got %v, want it passed to the next plugin", resp)
	}

	// A question without the final dot, as only in-process callers send it.
	resp := serve(t, lh, &dns.Msg{Question: []dns.Question{{Name: "nginx.demo.svc.clusterset.local", Qtype: dns.TypeA, Qclass: dns.ClassINET}}})
	if diff := cmp.Diff([]string{"nginx.demo.svc.clusterset.local.\t5\tIN\tA\t10.1.0.10"}, rrText(resp.Answer)); diff != "" {
		t.Errorf("answer to a name without the final dot (-want +got):\n%s", diff)
	}
}

// TestZones: several zones answer the same data, the longest match wins, and the
// root zone works.
func TestZones(t *testing.T) {
	ctrl := newFakeController(t, localCluster, testObjects()...)
	for _, tt := range []struct {
		name    string
		zones   []string
		qname   string
		want    string // the A record's text; "" for NXDOMAIN
		wantSOA string // the SOA owner of a negative answer
	}{
		{"second zone", []string{"clusterset.local.", "supercluster.local."}, "nginx.demo.svc.supercluster.local.", "nginx.demo.svc.supercluster.local.\t5\tIN\tA\t10.1.0.10", ""},
		{"longest zone wins", []string{"local.", "clusterset.local."}, "nope.demo.svc.clusterset.local.", "", "clusterset.local."},
		{"root zone", []string{"."}, "nginx.demo.svc.", "nginx.demo.svc.\t5\tIN\tA\t10.1.0.10", ""},
		{"root zone negative", []string{"."}, "nope.demo.svc.", "", "."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lh := newTestLighthouse(ctrl, func(c *config) { c.zones = tt.zones })
			resp := serve(t, lh, (&test.Case{Qname: tt.qname, Qtype: dns.TypeA}).Msg())
			if tt.want != "" {
				if len(resp.Answer) != 1 || resp.Answer[0].String() != tt.want {
					t.Errorf("answer %v, want %s", resp.Answer, tt.want)
				}
				return
			}
			if resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 || resp.Ns[0].Header().Name != tt.wantSOA {
				t.Errorf("got rcode %s authority %v, want NXDOMAIN with the SOA of %s", dns.RcodeToString[resp.Rcode], resp.Ns, tt.wantSOA)
			}
		})
	}
}

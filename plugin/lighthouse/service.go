package lighthouse

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// service is the read-only view of one imported service that queries are answered
// from. It is rebuilt whole whenever its ServiceImport or one of its EndpointSlices
// changes and never modified after it is published, so the handler reads it without
// locks; only the clusters' connection state (clusterState) changes under it.
type service struct {
	name, namespace string
	headless        bool
	// vip4 and vip6 are the clusterset IPs; when present they are the answer.
	vip4, vip6 []net.IP
	// ports are the ServiceImport's ports, sorted.
	ports []port
	// clusters has one entry per source cluster with an EndpointSlice, sorted by ID.
	clusters []*clusterRecords
	// next is the round-robin position, kept across rebuilds of the service.
	next *atomic.Uint32
}

// clusterRecords is what one source cluster contributes to a service.
type clusterRecords struct {
	*clusterState
	// ports are the ports of the cluster's slices: the Service's ports for a
	// ClusterSetIP service, the endpoints' (target) ports for a headless one.
	ports []port
	// v4 and v6 are, for a ClusterSetIP service, the cluster's service address
	// (ClusterIP or global IP) when a backend is ready.
	v4, v6 []net.IP
	// hosts are, for a headless service, the usable endpoints by host name, sorted.
	hosts []host
}

// host is one endpoint host name of a headless service in one cluster and its
// addresses (several when several endpoints or address families share the name).
type host struct {
	name   string
	v4, v6 []net.IP
}

// clusterState is one cluster of the clusterset as the plugin sees it. There is one
// per cluster ID, shared by every service the cluster exports, so that a change of
// a tunnel's state is one store.
type clusterState struct {
	id    string
	local bool
	// connected is the tunnel state from the Gateways; ignored for the local cluster.
	connected atomic.Bool
}

// reachable reports whether the cluster's addresses may be answered with: it is the
// local cluster, or its tunnel is connected.
func (c *clusterState) reachable() bool { return c.local || c.connected.Load() }

// findCluster returns the service's records of cluster id, or nil.
func (s *service) findCluster(id string) *clusterRecords {
	for _, c := range s.clusters {
		if c.id == id {
			return c
		}
	}
	return nil
}

// hasEndpoints reports whether a headless service has an endpoint DNS may answer
// with in a reachable cluster. Without one, the specification says the service's
// names do not exist (NXDOMAIN).
func (s *service) hasEndpoints() bool {
	for _, c := range s.clusters {
		if len(c.hosts) > 0 && c.reachable() {
			return true
		}
	}
	return false
}

// hasPort reports whether the service defines a port with this name and protocol,
// in its ServiceImport or in a cluster's slices.
func (s *service) hasPort(name, proto string) bool {
	if findPort(s.ports, name, proto) != nil {
		return true
	}
	for _, c := range s.clusters {
		if findPort(c.ports, name, proto) != nil {
			return true
		}
	}
	return false
}

// hasProto reports whether the service has a named port with protocol proto (so
// that _PROTO.NAME... is an empty non-terminal of its SRV names).
func (s *service) hasProto(proto string) bool {
	if portsHaveProto(s.ports, proto) {
		return true
	}
	for _, c := range s.clusters {
		if portsHaveProto(c.ports, proto) {
			return true
		}
	}
	return false
}

func portsHaveProto(ports []port, proto string) bool {
	for i := range ports {
		if ports[i].name != "" && ports[i].proto == proto {
			return true
		}
	}
	return false
}

// findPort returns the named port with this name and protocol, or nil.
func findPort(ports []port, name, proto string) *port {
	for i := range ports {
		if ports[i].name == name && ports[i].proto == proto && name != "" {
			return &ports[i]
		}
	}
	return nil
}

// findHost returns the cluster's host with this name, or nil.
func (c *clusterRecords) findHost(name string) *host {
	i, ok := slices.BinarySearchFunc(c.hosts, name, func(h host, n string) int { return cmp.Compare(h.name, n) })
	if !ok {
		return nil
	}
	return &c.hosts[i]
}

// serviceKey is the index key of a service: "NAME.NAMESPACE", the two labels in front
// of "svc" in a query name, so that a lookup needs no allocation.
func serviceKey(name, namespace string) string { return name + "." + namespace }

// buildService makes the view of one service from its ServiceImport and its
// EndpointSlices; cluster returns the shared state of a cluster ID. It returns nil
// when the service cannot appear in DNS (its name or namespace is not a DNS label).
func buildService(si *serviceImport, eps []*endpointSlice, cluster func(id string) *clusterState) *service {
	if !isLabel(si.name) || !isLabel(si.namespace) {
		return nil
	}
	s := &service{name: si.name, namespace: si.namespace, headless: si.headless, ports: si.ports, next: new(atomic.Uint32)}
	if !si.headless {
		for _, a := range si.ips {
			if a.Is4() {
				s.vip4 = append(s.vip4, net.IP(a.AsSlice()))
			} else {
				s.vip6 = append(s.vip6, net.IP(a.AsSlice()))
			}
		}
	}
	sorted := slices.Clone(eps)
	slices.SortFunc(sorted, func(a, b *endpointSlice) int {
		return cmp.Or(cmp.Compare(a.cluster, b.cluster), cmp.Compare(a.name, b.name))
	})
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j].cluster == sorted[i].cluster {
			j++
		}
		if id := sorted[i].cluster; id != "" {
			s.clusters = append(s.clusters, buildCluster(cluster(id), si.headless, sorted[i:j]))
		}
		i = j
	}
	return s
}

func buildCluster(state *clusterState, headless bool, eps []*endpointSlice) *clusterRecords {
	c := &clusterRecords{clusterState: state}
	var addrs []netip.Addr
	byHost := map[string][]netip.Addr{}
	for _, es := range eps {
		c.ports = append(c.ports, es.ports...)
		for _, e := range es.endpoints {
			if headless {
				byHost[e.hostname] = append(byHost[e.hostname], e.addrs...)
			} else {
				addrs = append(addrs, e.addrs...)
			}
		}
	}
	slices.SortFunc(c.ports, comparePorts)
	c.ports = slices.Compact(c.ports)
	c.v4, c.v6 = splitFamilies(addrs)
	for _, name := range sortedKeys(byHost) {
		h := host{name: name}
		h.v4, h.v6 = splitFamilies(byHost[name])
		c.hosts = append(c.hosts, h)
	}
	return c
}

// splitFamilies sorts and deduplicates addrs and returns the IPv4 and the IPv6 ones.
func splitFamilies(addrs []netip.Addr) (v4, v6 []net.IP) {
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range slices.Compact(addrs) {
		if a.Is4() {
			v4 = append(v4, net.IP(a.AsSlice()))
		} else {
			v6 = append(v6, net.IP(a.AsSlice()))
		}
	}
	return v4, v6
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// index holds the services by key and the clusters by ID. The controller and the
// handler tests' fake both keep their data in one.
type index struct {
	local string

	mu         sync.RWMutex
	services   map[string]*service
	namespaces map[string]int // services per namespace
	serial     atomic.Uint32

	clustersMu   sync.Mutex
	clusters     map[string]*clusterState
	allConnected bool            // no Gateway API: every cluster counts as connected
	connected    map[string]bool // from the active Gateways
}

func newIndex(local string) *index {
	x := &index{
		local:      local,
		services:   map[string]*service{},
		namespaces: map[string]int{},
		clusters:   map[string]*clusterState{},
		connected:  map[string]bool{},
	}
	x.touch()
	return x
}

// Service returns the service with key NAME.NAMESPACE, or nil.
func (x *index) Service(key string) *service {
	x.mu.RLock()
	s := x.services[key]
	x.mu.RUnlock()
	return s
}

// HasNamespace reports whether a service is imported in namespace ns.
func (x *index) HasNamespace(ns string) bool {
	x.mu.RLock()
	n := x.namespaces[ns]
	x.mu.RUnlock()
	return n > 0
}

// HasServices reports whether any service is imported.
func (x *index) HasServices() bool {
	x.mu.RLock()
	n := len(x.services)
	x.mu.RUnlock()
	return n > 0
}

// Serial is the SOA serial: the Unix time of the last change of the data.
func (x *index) Serial() uint32 { return x.serial.Load() }

func (x *index) touch() {
	now := uint32(time.Now().Unix())
	// Keep the serial increasing even if the clock steps back.
	for {
		old := x.serial.Load()
		next := max(now, old)
		if next == old && old != 0 {
			return
		}
		if x.serial.CompareAndSwap(old, next) {
			return
		}
	}
}

// set publishes s under key, or removes key when s is nil.
func (x *index) set(key string, s *service) {
	x.mu.Lock()
	old := x.services[key]
	if old == nil && s == nil {
		x.mu.Unlock()
		return
	}
	if old != nil {
		x.namespaces[old.namespace]--
		if x.namespaces[old.namespace] == 0 {
			delete(x.namespaces, old.namespace)
		}
	}
	if s == nil {
		delete(x.services, key)
	} else {
		if old != nil {
			s.next = old.next
		}
		x.services[key] = s
		x.namespaces[s.namespace]++
	}
	x.mu.Unlock()
	x.touch()
}

// cluster returns the shared state of cluster id, making it on first use.
func (x *index) cluster(id string) *clusterState {
	x.clustersMu.Lock()
	defer x.clustersMu.Unlock()
	c := x.clusters[id]
	if c == nil {
		c = &clusterState{id: id, local: id == x.local}
		c.connected.Store(x.allConnected || x.connected[id])
		x.clusters[id] = c
	}
	return c
}

// setConnectivity records which clusters have a connected tunnel: all of them when
// all is true (no Gateway API in the cluster), else those in connected.
func (x *index) setConnectivity(all bool, connected []string) {
	x.clustersMu.Lock()
	x.allConnected = all
	x.connected = make(map[string]bool, len(connected))
	for _, id := range connected {
		x.connected[id] = true
	}
	changed := false
	for id, c := range x.clusters {
		if now := all || x.connected[id]; c.connected.Swap(now) != now {
			changed = true
		}
	}
	x.clustersMu.Unlock()
	if changed {
		x.touch()
	}
}

// String renders every service and cluster, sorted by namespace and name, for tests
// and debugging.
func (x *index) String() string {
	x.mu.RLock()
	svcs := make([]*service, 0, len(x.services))
	for _, s := range x.services {
		svcs = append(svcs, s)
	}
	x.mu.RUnlock()
	slices.SortFunc(svcs, func(a, b *service) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})
	var b strings.Builder
	for _, s := range svcs {
		b.WriteString(s.String())
	}
	return b.String()
}

// String renders the service as text: one line for the service, one per cluster and
// one per host, sorted.
func (s *service) String() string {
	var b strings.Builder
	kind := "ClusterSetIP"
	if s.headless {
		kind = "Headless"
	}
	fmt.Fprintf(&b, "%s/%s %s", s.namespace, s.name, kind)
	if ips := joinIPs(s.vip4, s.vip6); ips != "" {
		fmt.Fprintf(&b, " ips=%s", ips)
	}
	if len(s.ports) > 0 {
		fmt.Fprintf(&b, " ports=%s", joinPorts(s.ports))
	}
	b.WriteString("\n")
	for _, c := range s.clusters {
		fmt.Fprintf(&b, "  cluster %s", c.id)
		switch {
		case c.local:
			b.WriteString(" local")
		case c.connected.Load():
			b.WriteString(" connected")
		default:
			b.WriteString(" disconnected")
		}
		if ips := joinIPs(c.v4, c.v6); ips != "" {
			fmt.Fprintf(&b, " ips=%s", ips)
		}
		if len(c.ports) > 0 {
			fmt.Fprintf(&b, " ports=%s", joinPorts(c.ports))
		}
		b.WriteString("\n")
		for _, h := range c.hosts {
			fmt.Fprintf(&b, "    host %s ips=%s\n", h.name, joinIPs(h.v4, h.v6))
		}
	}
	return b.String()
}

func joinIPs(v4, v6 []net.IP) string {
	var parts []string
	for _, ip := range append(slices.Clone(v4), v6...) {
		parts = append(parts, ip.String())
	}
	return strings.Join(parts, ",")
}

func joinPorts(ports []port) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

package clustersettest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/route"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

// counters are the packet and byte counts in iptables-save's chain lines.
// Numbers in the state that change by themselves: iptables-save's packet and
// byte counters, and the bridges' running timers in `ip -d link`.
var (
	counters = regexp.MustCompile(`\[\d+:\d+\]`)
	timers   = regexp.MustCompile(`(_timer) +[\d.]+`)
)

// KernelState is what our components manage in a node's network namespace, in
// a form that compares across time, one line per element: links (with their
// indexes, so a recreated link shows), routes of every table, rules, the FDB of
// vx-submariner, and the iptables rules, without counters, timers and
// timestamps.
func KernelState(t *testing.T, node string) []string {
	t.Helper()
	ns, err := netns.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var lines []string
	for _, cmd := range [][]string{
		{"ip", "-d", "link", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "rule", "show"},
		{"bridge", "fdb", "show", "dev", "vx-submariner"},
		{"iptables-save"},
	} {
		out, err := ns.Run(context.Background(), cmd[0], cmd[1:]...)
		if err != nil {
			t.Fatalf("%s in %s: %v: %s", strings.Join(cmd, " "), node, err, out)
		}
		lines = append(lines, "$ "+strings.Join(cmd, " "))
		for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			line = counters.ReplaceAllString(line, "[0:0]")
			lines = append(lines, timers.ReplaceAllString(line, "$1 -"))
		}
	}
	return lines
}

// Leftovers lists what of ours is left in the network namespaces of c's nodes,
// one line per finding ("NODE: what"): links of the route agent and the cable
// drivers, routes and rules of our routing protocols, and iptables chains (or
// jumps) of our prefixes. After an uninstall it is empty.
func Leftovers(t testing.TB, c *sandboxtest.Cluster) []string {
	t.Helper()
	var left []string
	for _, n := range c.Topology.Nodes {
		ns, err := netns.Open(n.NetNS)
		if err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) string {
			out, err := ns.Run(context.Background(), args[0], args[1:]...)
			if err != nil {
				t.Fatalf("%s in %s: %v: %s", strings.Join(args, " "), n.Name, err, out)
			}
			return string(out)
		}
		for _, link := range []string{"vx-submariner", "submariner"} {
			if _, err := ns.Run(context.Background(), "ip", "link", "show", "dev", link); err == nil {
				left = append(left, fmt.Sprintf("%s: link %s", n.Name, link))
			}
		}
		ours := []route.Protocol{route.ProtocolRouteAgent, route.ProtocolCable, route.ProtocolGlobalnet}
		for _, p := range ours {
			for _, line := range strings.Split(strings.TrimSpace(run("ip", "route", "show", "table", "all", "proto", fmt.Sprint(p))), "\n") {
				if line != "" {
					left = append(left, fmt.Sprintf("%s: route %s", n.Name, line))
				}
			}
		}
		// iproute2 cannot filter rules by protocol; -d prints it.
		for _, line := range strings.Split(run("ip", "-d", "rule", "show"), "\n") {
			for _, p := range ours {
				if strings.HasSuffix(line, fmt.Sprintf(" proto %d", p)) {
					left = append(left, fmt.Sprintf("%s: rule %s", n.Name, line))
				}
			}
		}
		for _, line := range strings.Split(run("iptables-save"), "\n") {
			if strings.Contains(line, iptables.SubmarinerPrefix) || strings.Contains(line, iptables.GlobalnetPrefix) {
				left = append(left, fmt.Sprintf("%s: iptables %s", n.Name, line))
			}
		}
		ns.Close()
	}
	return left
}

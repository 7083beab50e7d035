package sandbox

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/netkit/netns"
)

// Footprint lists, one item per line and sorted, everything on the machine that a
// sandbox makes or might leave behind: its network namespaces, root netns links
// with its prefix or addresses, routes with its protocol tag or through its links, the root netns's whole iptables and
// ip6tables rulesets (counters zeroed), the mounts of its namespaces and mounts
// inside stateDir, and processes that run our binaries (under binDirs), mention
// stateDir on their command line, or live in a sandbox namespace. Comparing it
// before `up` and after `down` proves that nothing is left. Pod namespaces are
// left out (node agents outside the sandbox, such as the node agent's tests, name
// theirs alike): check those by pod UID.
func Footprint(stateDir string, binDirs ...string) (string, error) {
	var items []string
	names, err := sandboxNetNS()
	if err != nil {
		return "", err
	}
	for _, n := range names {
		items = append(items, "netns "+n)
	}

	root, err := netlink.NewHandle()
	if err != nil {
		return "", fmt.Errorf("opening a netlink handle: %w", err)
	}
	defer root.Close()
	links, err := root.LinkList()
	if err != nil {
		return "", fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		addrs, _ := root.AddrList(l, netlink.FAMILY_V4)
		ours := strings.HasPrefix(name, Prefix)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && SandboxNetwork.Contains(ip.Unmap()) {
				ours = true
			}
		}
		if ours {
			items = append(items, "link "+name)
		}
	}
	routes, err := root.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return "", fmt.Errorf("listing routes: %w", err)
	}
	ourLinks := map[int]bool{}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, Prefix) {
			ourLinks[l.Attrs().Index] = true
		}
	}
	for _, r := range routes {
		if r.Protocol == RouteProtocol || ourLinks[r.LinkIndex] {
			items = append(items, fmt.Sprintf("route %s type %d proto %d table %d", r.Dst, r.Type, r.Protocol, r.Table))
		}
	}

	for _, cmd := range iptablesFamilies {
		out, err := exec.Command(cmd + "-save").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("running %s-save: %w: %s", cmd, err, bytes.TrimSpace(out))
		}
		items = append(items, rulesetItems(cmd, string(out))...)
	}

	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("reading mountinfo: %w", err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		point := f[4]
		name, inNetNSDir := strings.CutPrefix(point, netns.Dir+"/")
		ours := inNetNSDir && (name == FabricNetNS || nodeNetNS.MatchString(name))
		if ours || (stateDir != "" && strings.HasPrefix(point, stateDir)) {
			items = append(items, "mount "+point)
		}
	}

	procs, err := ourProcesses(stateDir, binDirs)
	if err != nil {
		return "", err
	}
	items = append(items, procs...)
	sort.Strings(items)
	return strings.Join(items, "\n"), nil
}

var builtinAccept = regexp.MustCompile(`^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT `)

// rulesetItems turns iptables-save output into items "CMD TABLE LINE": the rules,
// the user chains and the built-in chains whose policy is not ACCEPT. A table
// holding nothing else (which iptables-nft creates on first use) is no footprint.
func rulesetItems(cmd, save string) []string {
	var items []string
	table := ""
	for _, line := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case line == "", line == "COMMIT", strings.HasPrefix(line, "#"), builtinAccept.MatchString(line):
		case strings.HasPrefix(line, ":"):
			// Drop the counters of the chain line.
			if i := strings.Index(line, " ["); i >= 0 {
				line = line[:i]
			}
			items = append(items, cmd+" "+table+" "+line)
		default:
			items = append(items, cmd+" "+table+" "+line)
		}
	}
	return items
}

// ourProcesses lists the processes that run a binary from binDirs, mention
// stateDir on their command line, or live in a sandbox network namespace.
func ourProcesses(stateDir string, binDirs []string) ([]string, error) {
	inNS, err := netnsProcesses()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var items []string
	for _, r := range inNS {
		seen[r.PID] = true
		items = append(items, fmt.Sprintf("process %d %s", r.PID, r.Name))
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	for _, e := range entries {
		pid := 0
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid <= 0 || pid == os.Getpid() || seen[pid] {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")
		ours := stateDir != "" && strings.Contains(args, stateDir)
		for _, d := range binDirs {
			if d != "" && exe != "" && filepath.Dir(exe) == filepath.Clean(d) {
				ours = true
			}
		}
		if ours && !zombie(pid) {
			items = append(items, fmt.Sprintf("process %d %s", pid, args))
		}
	}
	return items, nil
}

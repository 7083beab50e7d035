package nodeagent

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// capNames are the Linux capabilities by number (linux/capability.h).
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// defaultCaps is the set container runtimes (containerd, CRI-O) give a container
// that is not privileged.
var defaultCaps = []string{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
	"NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

func capNumber(name string) (int, error) {
	n := strings.TrimPrefix(strings.ToUpper(name), "CAP_")
	for i, c := range capNames {
		if c == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown capability %q: use a name such as NET_ADMIN (see capabilities(7))", name)
}

// capabilitySet returns the capabilities (by number, sorted) a container keeps:
// all for a privileged container, else the runtime default set plus
// securityContext.capabilities.add minus drop ("ALL" in either means every
// capability; drop wins over add).
func capabilitySet(sc *corev1.SecurityContext) ([]int, error) {
	keep := map[int]bool{}
	all := func() {
		for i := range capNames {
			keep[i] = true
		}
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		all()
		return sortedCaps(keep), nil
	}
	for _, name := range defaultCaps {
		n, _ := capNumber(name)
		keep[n] = true
	}
	if sc == nil || sc.Capabilities == nil {
		return sortedCaps(keep), nil
	}
	// As container runtimes do: drops apply to the default set first (ALL empties
	// it), then adds apply on top, so drop ALL + add NET_BIND_SERVICE keeps exactly
	// NET_BIND_SERVICE.
	for _, c := range sc.Capabilities.Drop {
		if strings.EqualFold(string(c), "ALL") {
			keep = map[int]bool{}
			continue
		}
		n, err := capNumber(string(c))
		if err != nil {
			return nil, fmt.Errorf("securityContext.capabilities.drop: %w", err)
		}
		delete(keep, n)
	}
	for _, c := range sc.Capabilities.Add {
		if strings.EqualFold(string(c), "ALL") {
			all()
			continue
		}
		n, err := capNumber(string(c))
		if err != nil {
			return nil, fmt.Errorf("securityContext.capabilities.add: %w", err)
		}
		keep[n] = true
	}
	return sortedCaps(keep), nil
}

func sortedCaps(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

package nodeagent

// The container shim. The agent starts its own executable with shimArg, from a
// thread inside the pod's network namespace, in a new mount and UTS namespace
// (clone flags) and a new process group. The shim reads a shimSpec from fd 3,
// turns its copy of the host's mounts into slaves (so that the host's unmounts,
// such as a deleted network namespace, still reach it, and nothing it mounts
// reaches the host), bind-mounts the container's volumes and generated files,
// sets the hostname, drops capabilities and execs the container's binary. fd 4 is
// close-on-exec: a successful exec closes it silently, a failure writes the error
// there, so the agent tells "started" from "could not start" at once.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// shimArg is the hidden first argument that makes Init run the shim.
const shimArg = "__sbx-nodeagent-shim__"

// Descriptors the agent passes to the shim.
const (
	shimSpecFD   = 3
	shimStatusFD = 4
)

// shimSpec is everything the shim does, decided by the agent.
type shimSpec struct {
	// Path is the executable; "" looks Argv[0] up in the container's PATH.
	Path     string      `json:"path,omitempty"`
	Argv     []string    `json:"argv"`
	Env      []string    `json:"env"`
	Dir      string      `json:"dir,omitempty"`
	Hostname string      `json:"hostname"`
	Mounts   []shimMount `json:"mounts,omitempty"`
	// Sysfs mounts a sysfs of the container's network namespace over /sys.
	Sysfs bool `json:"sysfs,omitempty"`
	// Caps are the capabilities kept, by number, unless AllCaps.
	Caps         []int  `json:"caps"`
	AllCaps      bool   `json:"allCaps,omitempty"`
	NoNewPrivs   bool   `json:"noNewPrivs,omitempty"`
	UID          *int64 `json:"uid,omitempty"`
	GID          *int64 `json:"gid,omitempty"`
	SupplGroups  []int  `json:"supplementalGroups,omitempty"`
	ReadOnlyRoot bool   `json:"readOnlyRoot,omitempty"`
}

// shimMount is one bind mount, applied in order.
type shimMount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Init must be the first call in the main() of any binary that embeds the agent
// (and in TestMain): when the process was started as a container shim it sets up
// the container and execs its binary, and never returns. Otherwise it returns at
// once.
func Init() {
	if len(os.Args) < 2 || os.Args[1] != shimArg {
		return
	}
	err := runShim()
	// Only failures come back.
	msg := err.Error()
	status := os.NewFile(shimStatusFD, "status")
	_, _ = status.Write([]byte(msg))
	fmt.Fprintf(os.Stderr, "sandbox container shim: %s\n", msg)
	os.Exit(127)
}

func runShim() error {
	// Capabilities and credentials belong to a thread; exec happens on this one.
	runtime.LockOSThread()
	if _, err := unix.FcntlInt(shimStatusFD, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return fmt.Errorf("marking the status pipe close-on-exec: %w", err)
	}
	f := os.NewFile(shimSpecFD, "spec")
	var spec shimSpec
	err := json.NewDecoder(f).Decode(&spec)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading the container spec: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("making the container's mounts slaves of the host's: %w", err)
	}
	if spec.ReadOnlyRoot {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("making the root file system read-only: %w", err)
		}
	}
	if spec.Sysfs {
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if !spec.AllCaps {
			flags |= unix.MS_RDONLY
		}
		if err := unix.Mount("sysfs", "/sys", "sysfs", flags, ""); err != nil {
			return fmt.Errorf("mounting the pod's sysfs on /sys: %w", err)
		}
	}
	for _, m := range spec.Mounts {
		if err := unix.Mount(m.Source, m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s on %s: %w", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			if err := unix.Mount("", m.Target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("making %s read-only: %w", m.Target, err)
			}
		}
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return fmt.Errorf("setting hostname %q: %w", spec.Hostname, err)
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.Chdir(dir); err != nil {
		return fmt.Errorf("changing to the working directory %s: %w", dir, err)
	}
	path := spec.Path
	if path == "" {
		if len(spec.Argv) == 0 {
			return errors.New("empty command")
		}
		if path, err = lookPath(spec.Argv[0], spec.Env); err != nil {
			return err
		}
	}
	if spec.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("setting no_new_privs: %w", err)
		}
	}
	if !spec.AllCaps {
		if err := dropCapabilities(spec.Caps); err != nil {
			return err
		}
	}
	if spec.GID != nil || spec.SupplGroups != nil {
		if err := unix.Setgroups(spec.SupplGroups); err != nil {
			return fmt.Errorf("setting supplemental groups: %w", err)
		}
	}
	if spec.GID != nil {
		if err := unix.Setresgid(int(*spec.GID), int(*spec.GID), int(*spec.GID)); err != nil {
			return fmt.Errorf("setting group %d: %w", *spec.GID, err)
		}
	}
	if spec.UID != nil {
		if err := unix.Setresuid(int(*spec.UID), int(*spec.UID), int(*spec.UID)); err != nil {
			return fmt.Errorf("setting user %d: %w", *spec.UID, err)
		}
	}
	if err := syscall.Exec(path, spec.Argv, spec.Env); err != nil {
		return fmt.Errorf("executing %s: %w", path, err)
	}
	return nil
}

// lookPath finds name in the container's PATH, as a container runtime does.
func lookPath(name string, env []string) (string, error) {
	pathEnv := defaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in PATH %s", name, pathEnv)
}

// dropCapabilities removes every capability not in keep from the bounding,
// inheritable, permitted, effective and ambient sets of this thread, which then
// execs.
func dropCapabilities(keep []int) error {
	last := len(capNames) - 1
	if data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			last = n
		}
	}
	kept := map[int]bool{}
	for _, c := range keep {
		kept[c] = true
	}
	for c := 0; c <= last; c++ {
		if kept[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	var mask [2]uint32
	for _, c := range keep {
		if c < 64 {
			mask[c/32] |= 1 << (c % 32)
		}
	}
	for i := range data {
		data[i].Effective &= mask[i]
		data[i].Permitted &= mask[i]
		data[i].Inheritable &= mask[i]
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting capabilities: %w", err)
	}
	return nil
}

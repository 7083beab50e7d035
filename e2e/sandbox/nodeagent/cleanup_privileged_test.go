package nodeagent

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
)

// TestPrivilegedCleanupAfterCrash builds the state a crashed agent leaves (a pod
// record with a running process, the pod's network namespace, a mount point
// that process holds, the CNI bridge in the node namespace) and checks that
// Cleanup removes all of it, and that it spares a process whose PID was reused.
//
//	node netns smtest-...: cni0 (left by the "crashed" agent)
//	pod netns sbx-pod-<uid>: recorded in the pod record
//	root: sleep (recorded, killed), sleep (PID recorded with another start time, spared)
func TestPrivilegedCleanupAfterCrash(t *testing.T) {
	netnstest.RequirePrivileged(t)
	ctx := context.Background()
	nodeNS := netnstest.New(t)
	c := &cni{ns: nodeNS, podCIDR: mustPrefix("10.250.1.0/24"), clusterCIDR: mustPrefix("10.250.0.0/16")}
	if err := c.setupNode(ctx); err != nil {
		t.Fatal(err)
	}
	uid := "cleanup-test-" + filepathSafePID()
	podNS, err := c.addPod(ctx, uid, mustAddr("10.250.1.2"))
	if err != nil {
		t.Fatal(err)
	}
	podNS.Close()
	t.Cleanup(func() { _ = netns.Remove(ctx, podNetNSName(uid)) })

	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	victim := start()
	bystander := start()
	victimID, err := identify(victim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	bystanderID, err := identify(bystander.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	reused := procID{PID: bystanderID.PID, Start: bystanderID.Start - 1}

	stateDir := filepath.Join(t.TempDir(), "state")
	mountRoot := t.TempDir()
	target := filepath.Join(mountRoot, "created", "mountpoint")
	rec := podRecord{Namespace: "ns", Name: "p", UID: uid, NetNS: podNetNSName(uid),
		Processes: map[string]procID{"container/main": victimID, "container/other": reused}}
	if err := writeJSON(filepath.Join(stateDir, podsDir, uid, podRecordFile), rec); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(filepath.Join(stateDir, nodeRecordFile), nodeRecord{NodeName: "n", NetNS: nodeNS.Name}); err != nil {
		t.Fatal(err)
	}
	if err := (registry{path: MountPointRegistry}).ensure([]string{target}, nil, victimID); err != nil {
		t.Fatal(err)
	}

	// The process is reaped by this test, not by Cleanup: wait for it in the
	// background so Cleanup sees it go.
	waited := make(chan error, 1)
	go func() { waited <- victim.Wait() }()
	if err := Cleanup(ctx, stateDir); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	<-waited
	if victimID.alive() {
		t.Error("the recorded process still runs")
	}
	if !bystanderID.alive() {
		t.Error("a process whose PID was recorded with another start time was killed")
	}
	if podNetNSExists(uid) {
		t.Error("the pod network namespace is still there")
	}
	if _, err := os.Stat(filepath.Join(mountRoot, "created")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the created mount point is still there (%v)", err)
	}
	if _, err := nodeNS.Netlink.LinkByName(BridgeName); err == nil {
		t.Errorf("%s is still in the node namespace", BridgeName)
	}
	if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state directory is still there (%v)", err)
	}
	if err := Cleanup(ctx, stateDir); err != nil {
		t.Errorf("a second Cleanup: %v", err)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func filepathSafePID() string { return strconv.Itoa(os.Getpid()) }

package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/submariner-go/submariner/agents/netkit/netns"
)

// Cleanup stops and removes everything a (possibly crashed) agent recorded under
// stateDir: its pods' processes (each by recorded PID, and only while that PID
// still has the recorded start time), the pods' network namespaces, the mount
// points it created (unless a living container of another agent holds them), its
// CNI setup in the node's network namespace, and the state directory itself.
// Running it twice, or on a directory that does not exist, is harmless.
func Cleanup(ctx context.Context, stateDir string) error {
	if !filepath.IsAbs(stateDir) {
		return fmt.Errorf("state directory %q is not an absolute path", stateDir)
	}
	if _, err := os.Stat(stateDir); errors.Is(err, os.ErrNotExist) {
		return registry{path: MountPointRegistry}.gc()
	}
	var errs []error
	records, err := readPodRecords(stateDir)
	if err != nil {
		errs = append(errs, err)
	}
	// Kill every recorded process first, then wait, so pods stop in parallel.
	for _, r := range records {
		for _, key := range sortedKeys(r.Processes) {
			if err := r.Processes[key].kill(syscall.SIGKILL); err != nil {
				errs = append(errs, fmt.Errorf("pod %s/%s: %w", r.Namespace, r.Name, err))
			}
		}
	}
	for _, r := range records {
		for _, key := range sortedKeys(r.Processes) {
			if err := waitGone(ctx, r.Processes[key]); err != nil {
				errs = append(errs, fmt.Errorf("pod %s/%s: %w", r.Namespace, r.Name, err))
			}
		}
	}
	var nodeNS *netns.NS
	var node nodeRecord
	if data, err := os.ReadFile(filepath.Join(stateDir, nodeRecordFile)); err == nil {
		if err := json.Unmarshal(data, &node); err == nil && node.NetNS != "" {
			if ns, err := netns.Open(node.NetNS); err == nil {
				nodeNS = ns
				defer ns.Close()
			}
		}
	}
	for _, r := range records {
		if r.NetNS != "" || podNetNSExists(r.UID) {
			if err := removePodNetwork(ctx, nodeNS, r.UID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if nodeNS != nil {
		if err := teardownNode(ctx, nodeNS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := (registry{path: MountPointRegistry}).gc(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		// Keep the records, so a second run can finish the job.
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(stateDir); err != nil {
		return fmt.Errorf("removing state directory %s: %w", stateDir, err)
	}
	return nil
}

// readPodRecords reads every pod record under stateDir, sorted by UID.
func readPodRecords(stateDir string) ([]podRecord, error) {
	dir := filepath.Join(stateDir, podsDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var out []podRecord
	var errs []error
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), podRecordFile))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var r podRecord
		if err := json.Unmarshal(data, &r); err != nil {
			errs = append(errs, fmt.Errorf("pod record %s is corrupt: %w", e.Name(), err))
			continue
		}
		if r.UID == "" {
			r.UID = e.Name()
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, errors.Join(errs...)
}

package nodeagent

// Volumes whose content comes from the API (ConfigMap, Secret, downward API,
// projected) are written the way the kubelet's atomic writer does, so that a
// reader never sees half an update and watchers of the files (CoreDNS's reload
// plugin) see one change:
//
//	<volume>/..2026_01_02_15_04_05.123456789/<files>   the current payload
//	<volume>/..data -> ..2026_01_02_15_04_05.123456789 swapped by rename(2)
//	<volume>/<key> -> ..data/<key>                      one link per top-level name

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
)

// payloadFile is one file of a volume.
type payloadFile struct {
	Data []byte
	Mode fs.FileMode
}

// validatePayloadPath refuses absolute paths, ".." elements and names starting
// with "..", which would escape the volume or clash with the writer's own names.
func validatePayloadPath(p string) error {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "..") {
		return fmt.Errorf("invalid volume file path %q: use a relative path that does not start with '..'", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "" {
			return fmt.Errorf("invalid volume file path %q: use a relative path without '..' or empty elements", p)
		}
	}
	return nil
}

// writeAtomic makes dir hold exactly payload, swapping the whole content in one
// rename. It reports whether anything changed.
func writeAtomic(dir string, payload map[string]payloadFile) (bool, error) {
	for p := range payload {
		if err := validatePayloadPath(p); err != nil {
			return false, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("creating volume directory %s: %w", dir, err)
	}
	oldTarget, _ := os.Readlink(filepath.Join(dir, dataDirName))
	if oldTarget != "" && samePayload(filepath.Join(dir, oldTarget), payload) {
		return false, ensureLinks(dir, payload)
	}
	ts := ".." + time.Now().UTC().Format("2006_01_02_15_04_05.000000000")
	newDir := filepath.Join(dir, ts)
	if err := os.Mkdir(newDir, 0o755); err != nil {
		return false, fmt.Errorf("creating %s: %w", newDir, err)
	}
	paths := sortedKeys(payload)
	for _, p := range paths {
		f := payload[p]
		full := filepath.Join(newDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, fmt.Errorf("creating %s: %w", filepath.Dir(full), err)
		}
		if err := os.WriteFile(full, f.Data, f.Mode); err != nil {
			return false, fmt.Errorf("writing %s: %w", full, err)
		}
		if err := os.Chmod(full, f.Mode); err != nil {
			return false, fmt.Errorf("setting the mode of %s: %w", full, err)
		}
	}
	tmpLink := filepath.Join(dir, newDataDirName)
	_ = os.Remove(tmpLink)
	if err := os.Symlink(ts, tmpLink); err != nil {
		return false, fmt.Errorf("linking %s: %w", tmpLink, err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataDirName)); err != nil {
		return false, fmt.Errorf("swapping %s: %w", filepath.Join(dir, dataDirName), err)
	}
	if err := ensureLinks(dir, payload); err != nil {
		return true, err
	}
	if oldTarget != "" && oldTarget != ts {
		if err := os.RemoveAll(filepath.Join(dir, oldTarget)); err != nil {
			return true, fmt.Errorf("removing the old payload %s: %w", oldTarget, err)
		}
	}
	return true, nil
}

// ensureLinks makes the top-level links match the payload's top-level names.
func ensureLinks(dir string, payload map[string]payloadFile) error {
	want := map[string]bool{}
	for p := range payload {
		want[strings.SplitN(p, "/", 2)[0]] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") || want[e.Name()] {
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("removing stale link %s: %w", e.Name(), err)
			}
		}
	}
	for name := range want {
		link := filepath.Join(dir, name)
		target := filepath.Join(dataDirName, name)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("linking %s: %w", link, err)
		}
	}
	return nil
}

// samePayload reports whether dir holds exactly payload (content and modes).
func samePayload(dir string, payload map[string]payloadFile) bool {
	count := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		want, ok := payload[rel]
		if !ok {
			return errors.New("extra file")
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if info.Mode().Perm() != want.Mode.Perm() || !bytes.Equal(data, want.Data) {
			return errors.New("changed")
		}
		count++
		return nil
	})
	return err == nil && count == len(payload)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package nodeagent

// Containers see their volumes at paths of the host's file system (there is no
// image root file system), so a mount path that does not exist on the host, such
// as /var/run/secrets/kubernetes.io/serviceaccount, has to be created there. The
// registry records every directory or file the agents created for that, with the
// processes that use it, in one file for the whole machine (agents of several
// nodes, in one process or many, share the host's file system). A path is removed
// once no living process holds it: removing a directory that is a mount point in
// a running container's mount namespace would detach that container's mount.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// MountPointRegistry is the machine-wide record of mount points the node agents
// created on the host.
const MountPointRegistry = "/run/sbx-nodeagent-mountpoints.json"

// mountPoints is the registry's content: created path -> holders.
type mountPoints struct {
	Paths map[string]*mountPointEntry `json:"paths"`
}

type mountPointEntry struct {
	// File is true for a created empty file (the mount point of a file).
	File    bool     `json:"file,omitempty"`
	Holders []procID `json:"holders"`
}

// registry serializes access to the registry file with flock on the file itself,
// re-opening when another agent removed it meanwhile.
type registry struct{ path string }

func (r registry) locked(fn func(*mountPoints) error) error {
	var f *os.File
	for {
		var err error
		f, err = os.OpenFile(r.path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("opening the mount point registry %s: %w", r.path, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return fmt.Errorf("locking the mount point registry %s: %w", r.path, err)
		}
		var st1, st2 syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &st1) == nil && syscall.Stat(r.path, &st2) == nil && st1.Ino == st2.Ino {
			break
		}
		f.Close() // removed or replaced while we waited for the lock
	}
	defer f.Close()
	mp := &mountPoints{Paths: map[string]*mountPointEntry{}}
	data, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("reading the mount point registry %s: %w", r.path, err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, mp); err != nil {
			return fmt.Errorf("the mount point registry %s is corrupt (%w): remove it after stopping every node agent", r.path, err)
		}
		if mp.Paths == nil {
			mp.Paths = map[string]*mountPointEntry{}
		}
	}
	fnErr := fn(mp)
	if len(mp.Paths) == 0 {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return errors.Join(fnErr, fmt.Errorf("removing the empty mount point registry: %w", err))
		}
		return fnErr
	}
	out, err := json.MarshalIndent(mp, "", "  ")
	if err != nil {
		return errors.Join(fnErr, err)
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return errors.Join(fnErr, fmt.Errorf("writing the mount point registry: %w", err))
	}
	// Rename keeps the lock file's inode check meaningful: writers that opened the
	// old inode re-open after their lock.
	if err := os.Rename(tmp, r.path); err != nil {
		return errors.Join(fnErr, fmt.Errorf("writing the mount point registry: %w", err))
	}
	return fnErr
}

// ensure makes every target exist on the host (directories, or an empty file
// where isFile says so), records what it created and adds holder to every
// recorded path on the way to each target, so none is removed while holder runs.
func (r registry) ensure(targets []string, isFile map[string]bool, holder procID) error {
	return r.locked(func(mp *mountPoints) error {
		for _, target := range targets {
			t, err := canonicalPath(target)
			if err != nil {
				return err
			}
			created, err := createPath(t, isFile[target])
			for _, c := range created {
				mp.Paths[c] = &mountPointEntry{File: c == t && isFile[target]}
			}
			if err != nil {
				return err
			}
			for p := t; p != "/" && p != "."; p = filepath.Dir(p) {
				if e, ok := mp.Paths[p]; ok {
					e.Holders = appendHolder(e.Holders, holder)
				}
			}
		}
		return nil
	})
}

// handOver replaces holder from by to on every path (the agent holds the paths
// while it starts a container, the container once it runs).
func (r registry) handOver(from, to procID) error {
	return r.locked(func(mp *mountPoints) error {
		for _, e := range mp.Paths {
			for i, h := range e.Holders {
				if h == from {
					e.Holders[i] = to
				}
			}
		}
		return nil
	})
}

// release drops holder and removes the paths no living process holds.
func (r registry) release(holder procID) error {
	return r.locked(func(mp *mountPoints) error {
		for _, e := range mp.Paths {
			e.Holders = removeHolder(e.Holders, holder)
		}
		return gcPaths(mp)
	})
}

// gc removes the paths no living process holds.
func (r registry) gc() error {
	if _, err := os.Stat(r.path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return r.locked(gcPaths)
}

func gcPaths(mp *mountPoints) error {
	var dead []string
	for p, e := range mp.Paths {
		var living []procID
		for _, h := range e.Holders {
			if h.alive() {
				living = append(living, h)
			}
		}
		e.Holders = living
		if len(living) == 0 {
			dead = append(dead, p)
		}
	}
	// Deepest first, so a parent is empty when its turn comes.
	sort.Slice(dead, func(i, j int) bool {
		if di, dj := strings.Count(dead[i], "/"), strings.Count(dead[j], "/"); di != dj {
			return di > dj
		}
		return dead[i] < dead[j]
	})
	var errs []error
	for _, p := range dead {
		err := os.Remove(p)
		switch {
		case err == nil || errors.Is(err, os.ErrNotExist):
			delete(mp.Paths, p)
		case errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST):
			// Something else put files there: leave it, and stop tracking it.
			delete(mp.Paths, p)
		default:
			errs = append(errs, fmt.Errorf("removing mount point %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func appendHolder(hs []procID, h procID) []procID {
	for _, x := range hs {
		if x == h {
			return hs
		}
	}
	return append(hs, h)
}

func removeHolder(hs []procID, h procID) []procID {
	out := hs[:0]
	for _, x := range hs {
		if x != h {
			out = append(out, x)
		}
	}
	return out
}

// createPath creates target (a directory, or an empty file when file is true)
// and its missing parents, returning what it created, outermost first.
func createPath(target string, file bool) ([]string, error) {
	if !filepath.IsAbs(target) {
		return nil, fmt.Errorf("mount path %q is not absolute", target)
	}
	var missing []string
	for p := filepath.Clean(target); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("checking mount path %s: %w", p, err)
		}
		missing = append(missing, p)
		if p == "/" {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		var err error
		if i == 0 && file {
			var f *os.File
			f, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err == nil {
				err = f.Close()
			}
		} else {
			err = os.Mkdir(p, 0o755)
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return created, fmt.Errorf("creating mount point %s: %w", p, err)
		}
		if err == nil {
			created = append(created, p)
		}
	}
	return created, nil
}

// canonicalPath resolves the symbolic links in the part of p that exists, so that
// one directory is recorded under one name (/var/run/x and /run/x are the same).
func canonicalPath(p string) (string, error) {
	p = filepath.Clean(p)
	var rest []string
	for cur := p; ; cur = filepath.Dir(cur) {
		if resolved, err := filepath.EvalSymlinks(cur); err == nil {
			for i := len(rest) - 1; i >= 0; i-- {
				resolved = filepath.Join(resolved, rest[i])
			}
			return resolved, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("resolving mount path %s: %w", p, err)
		}
		if cur == "/" {
			return p, nil
		}
		rest = append(rest, filepath.Base(cur))
	}
}

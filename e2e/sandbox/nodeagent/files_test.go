package nodeagent

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestNextFree(t *testing.T) {
	p := netip.MustParsePrefix("10.1.2.0/29") // hosts .1-.6; .1 is the gateway
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	used := func(s ...string) map[netip.Addr]bool {
		m := map[netip.Addr]bool{}
		for _, x := range s {
			m[a(x)] = true
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		used    map[netip.Addr]bool
		last    netip.Addr
		want    string
		wantErr string
	}{
		{name: "first", used: used(), want: "10.1.2.2"},
		{name: "after last", used: used("10.1.2.2"), last: a("10.1.2.3"), want: "10.1.2.4"},
		{name: "skips used", used: used("10.1.2.4", "10.1.2.5"), last: a("10.1.2.3"), want: "10.1.2.6"},
		{name: "wraps", used: used("10.1.2.6"), last: a("10.1.2.5"), want: "10.1.2.2"},
		{name: "full", used: used("10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"), last: a("10.1.2.6"),
			wantErr: "pod CIDR 10.1.2.0/29 is full: every address is allocated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nextFree(p, tc.used, tc.last)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Errorf("nextFree = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestIPAMPersists(t *testing.T) {
	dir := t.TempDir()
	m := &ipam{dir: dir, prefix: netip.MustParsePrefix("10.1.2.0/24")}
	a1, err := m.allocate("pod-a")
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.allocate("pod-a")
	if err != nil || again != a1 {
		t.Errorf("a pod asking again got %v (%v), want its address %s", again, err, a1)
	}
	// A new ipam on the same directory (an agent restart) knows the allocations.
	m2 := &ipam{dir: dir, prefix: m.prefix}
	b, err := m2.allocate("pod-b")
	if err != nil || b == a1 {
		t.Fatalf("second pod got %v (%v)", b, err)
	}
	if err := m2.release("pod-a"); err != nil {
		t.Fatal(err)
	}
	c, err := m2.allocate("pod-c")
	if err != nil || c == a1 {
		t.Errorf("a released address is not handed out at once: got %v (%v)", c, err)
	}
	got := []string{a1.String(), b.String(), c.String()}
	if diff := cmp.Diff([]string{"10.1.2.2", "10.1.2.3", "10.1.2.4"}, got); diff != "" {
		t.Errorf("allocations (-want +got):\n%s", diff)
	}
}

func TestPlanRoutes(t *testing.T) {
	own := netip.MustParsePrefix("10.241.21.0/24")
	nodes := []nodeRoute{
		{Name: "gw1", PodCIDRs: []netip.Prefix{own}, IP: netip.MustParseAddr("192.168.241.21")},
		{Name: "node1", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.241.11.0/24")}, IP: netip.MustParseAddr("192.168.241.11")},
		{Name: "gw2", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.241.22.0/24")}, IP: netip.MustParseAddr("192.168.241.22")},
		{Name: "no-ip", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.241.30.0/24")}},
		{Name: "overlap", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.241.21.0/25")}, IP: netip.MustParseAddr("192.168.241.40")},
	}
	var got []string
	for _, r := range planRoutes("gw1", own, nodes) {
		got = append(got, r.String())
	}
	want := []string{"10.241.11.0/24 via 192.168.241.11", "10.241.22.0/24 via 192.168.241.22"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("planRoutes (-want +got):\n%s", diff)
	}
}

func TestMasqueradeRules(t *testing.T) {
	got := masqueradeRules(netip.MustParsePrefix("10.241.21.0/24"), netip.MustParsePrefix("10.241.0.0/16"))
	want := `*nat
:SANDBOX-CNI - [0:0]
-A SANDBOX-CNI -d 10.241.0.0/16 -m comment --comment "sandbox cni: pod traffic inside the cluster keeps its source" -j RETURN
-A SANDBOX-CNI -s 10.241.21.0/24 -m comment --comment "sandbox cni: masquerade pod traffic leaving the cluster" -j MASQUERADE
COMMIT
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	if n := len(vethName("0c8a5c1f-4d1e-4b4b-9d7e-3f1c2b0a9e11")); n > 15 {
		t.Errorf("veth name is %d bytes, the kernel allows 15", n)
	}
}

func TestLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	lf, err := createLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxLogLine+10)
	lf.copyFrom(strings.NewReader("one\ntwo\n"+long+"\nthree"), streamStdout)
	lf.copyFrom(strings.NewReader("oops\n"), streamStderr)
	lf.close()

	read := func(opts logOptions) string {
		t.Helper()
		var b bytes.Buffer
		if err := readLog(context.Background(), path, nil, opts, &b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if diff := cmp.Diff("one\ntwo\n"+long+"\nthree\noops\n", read(logOptions{})); diff != "" {
		t.Errorf("all (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(long+"\nthree\noops\n", read(logOptions{TailLines: ptr.To(int64(3))})); diff != "" {
		t.Errorf("tail 3 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("oops\n", read(logOptions{Stream: "Stderr"})); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("one\ntw", read(logOptions{LimitBytes: ptr.To(int64(6))})); diff != "" {
		t.Errorf("limitBytes (-want +got):\n%s", diff)
	}
	ts := read(logOptions{Timestamps: true, TailLines: ptr.To(int64(1))})
	if f := strings.Fields(ts); len(f) != 2 || f[1] != "oops" {
		t.Errorf("timestamps: got %q", ts)
	} else if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
		t.Errorf("timestamps: %v", err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte(" stdout P ")) {
		t.Errorf("a line longer than %d bytes was not split into partial records", maxLogLine)
	}
}

func TestLogFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	lf, err := createLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lf.write(logRecord{Time: time.Now(), Stream: streamStdout, Content: []byte("before")})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- readLog(context.Background(), path, lf, logOptions{Follow: true}, w)
		w.Close()
	}()
	buf := make([]byte, 7)
	if _, err := r.Read(buf); err != nil || string(buf) != "before\n" {
		t.Fatalf("first line: %q %v", buf, err)
	}
	lf.write(logRecord{Time: time.Now(), Stream: streamStdout, Content: []byte("after")})
	lf.close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rest, _ := readAllFrom(r)
	out.WriteString(rest)
	if out.String() != "after\n" {
		t.Errorf("follow got %q after the first line, want %q", out.String(), "after\n")
	}
}

func readAllFrom(f *os.File) (string, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(f)
	return b.String(), err
}

func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	v1 := map[string]payloadFile{"a": {Data: []byte("1"), Mode: 0o644}, "sub/b": {Data: []byte("2"), Mode: 0o400}}
	changed, err := writeAtomic(dir, v1)
	if err != nil || !changed {
		t.Fatalf("first write: changed %v, %v", changed, err)
	}
	first, _ := os.Readlink(filepath.Join(dir, dataDirName))
	if changed, err := writeAtomic(dir, v1); err != nil || changed {
		t.Errorf("same payload: changed %v, %v", changed, err)
	}
	v2 := map[string]payloadFile{"a": {Data: []byte("one"), Mode: 0o644}, "c": {Data: []byte("3"), Mode: 0o600}}
	if changed, err := writeAtomic(dir, v2); err != nil || !changed {
		t.Fatalf("second write: changed %v, %v", changed, err)
	}
	second, _ := os.Readlink(filepath.Join(dir, dataDirName))
	if second == first {
		t.Errorf("..data still points at %s", first)
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("the old payload %s is still there", first)
	}
	var got []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		st, _ := os.Stat(filepath.Join(dir, e.Name()))
		got = append(got, fmt.Sprintf("%s -> %s = %s %v", e.Name(), target, data, st.Mode().Perm()))
	}
	want := []string{"a -> ..data/a = one -rw-r--r--", "c -> ..data/c = 3 -rw-------"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("volume (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"../x", "/abs", "..hidden", "a//b"} {
		if _, err := writeAtomic(dir, map[string]payloadFile{bad: {Mode: fs.FileMode(0o644)}}); err == nil {
			t.Errorf("path %q was accepted", bad)
		}
	}
}

func TestMountPlan(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cfg")
	data := filepath.Join(dir, "data")
	for _, d := range []string{cfg, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := podFiles{Hosts: filepath.Join(dir, "hosts"), ResolvConf: filepath.Join(dir, "resolv.conf"), Hostname: filepath.Join(dir, "hostname")}
	for _, f := range []string{files.Hosts, files.ResolvConf, files.Hostname} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := &corev1.Container{VolumeMounts: []corev1.VolumeMount{
		{Name: "data", MountPath: "/srv/data/inner", SubPath: "x"},
		{Name: "cfg", MountPath: "/srv"},
		{Name: "data", MountPath: "/etc/hosts", SubPath: "hosts-file"},
	}}
	if err := os.WriteFile(filepath.Join(data, "hosts-file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	vols := map[string]volumeSource{"cfg": {Path: cfg, ReadOnly: true}, "data": {Path: data}}
	plan, err := mountPlan(c, vols, files, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range plan {
		got = append(got, fmt.Sprintf("%s <- %s ro=%v file=%v at %s",
			m.Target, strings.TrimPrefix(m.Source, dir), m.ReadOnly, m.File, strings.TrimPrefix(m.HostTarget, dir)))
	}
	want := []string{
		"/srv <- /cfg ro=true file=false at /srv",
		"/etc/hosts <- /data/hosts-file ro=false file=true at /etc/hosts",
		"/etc/resolv.conf <- /resolv.conf ro=false file=true at /etc/resolv.conf",
		"/etc/hostname <- /hostname ro=false file=true at /etc/hostname",
		"/srv/data/inner <- /data/x ro=false file=false at /cfg/data/inner",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mount plan (-want +got):\n%s", diff)
	}
	if _, err := mountPlan(&corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "nope", MountPath: "/x"}}}, vols, files, nil); err == nil ||
		err.Error() != `volumeMount /x refers to volume "nope", which the pod does not define` {
		t.Errorf("unknown volume: %v", err)
	}
	if _, err := mountPlan(&corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/x", SubPath: "../../etc"}}}, vols, files, nil); err == nil {
		t.Error("a subPath leaving its volume was accepted")
	}
}

func TestRegistry(t *testing.T) {
	root := t.TempDir()
	reg := registry{path: filepath.Join(root, "registry.json")}
	self, err := identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	holder := self
	holder.Token = "a"
	target := filepath.Join(root, "made", "by", "us")
	file := filepath.Join(root, "made", "file")
	if err := reg.ensure([]string{target, file}, map[string]bool{file: true}, holder); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(file); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("file mount point: %v", err)
	}
	other := self
	other.Token = "b"
	if err := reg.ensure([]string{target}, nil, other); err != nil {
		t.Fatal(err)
	}
	if err := reg.release(holder); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("a mount point still held by another holder was removed: %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("a file only we held is still there: %v", err)
	}
	// A dead holder does not keep a path: gc removes it.
	dead := procID{PID: self.PID, Start: self.Start + 1}
	if err := reg.handOver(other, dead); err != nil {
		t.Fatal(err)
	}
	if err := reg.gc(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "made")); !os.IsNotExist(err) {
		t.Errorf("paths of a dead holder are still there: %v", err)
	}
	if _, err := os.Stat(reg.path); !os.IsNotExist(err) {
		t.Errorf("the empty registry file is still there: %v", err)
	}
}

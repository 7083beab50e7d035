package nodeagent

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestCatalogResolve(t *testing.T) {
	c := DefaultCatalog("/opt/bin")
	for _, tc := range []struct {
		name, ref, wantBinary, wantErr string
	}{
		{name: "tag", ref: "ghcr.io/submariner-go/submariner-gateway:v0.1.0", wantBinary: "/opt/bin/gateway"},
		{name: "digest", ref: "ghcr.io/submariner-go/submariner-route-agent@sha256:0123", wantBinary: "/opt/bin/routeagent"},
		{name: "tag and digest", ref: "registry.k8s.io/coredns/coredns:v1.15.0@sha256:abcd", wantBinary: "/opt/bin/coredns"},
		{name: "no tag", ref: "ghcr.io/submariner-go/nettest", wantBinary: "/opt/bin/nettest"},
		{name: "lighthouse coredns", ref: "ghcr.io/submariner-go/lighthouse-coredns:dev", wantBinary: "/opt/bin/coredns"},
		{name: "unknown", ref: "docker.io/library/busybox:1.36", wantErr: `image "docker.io/library/busybox:1.36" is not in the sandbox catalog, which knows ghcr.io/submariner-go/lighthouse-agent, ghcr.io/submariner-go/lighthouse-coredns, ghcr.io/submariner-go/nettest, ghcr.io/submariner-go/submariner-gateway, ghcr.io/submariner-go/submariner-globalnet, ghcr.io/submariner-go/submariner-route-agent, registry.k8s.io/coredns/coredns`},
		{name: "registry port is not a tag", ref: "localhost:5000/nettest", wantErr: `image "localhost:5000/nettest" is not in the sandbox catalog`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := c.Resolve(tc.ref)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve(%q) error = %v, want one starting %q", tc.ref, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Binary != tc.wantBinary {
				t.Errorf("Resolve(%q) = %s, want %s", tc.ref, img.Binary, tc.wantBinary)
			}
		})
	}
}

func TestCatalogShortNames(t *testing.T) {
	c := Catalog{Images: []Image{{Repository: "busybox", Binary: "/bin/busybox", Entrypoint: "/bin/sh"}}}
	for _, ref := range []string{"busybox", "busybox:1", "docker.io/busybox", "docker.io/library/busybox:latest"} {
		if _, err := c.Resolve(ref); err != nil {
			t.Errorf("Resolve(%q): %v", ref, err)
		}
	}
}

func TestCatalogValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		images  []Image
		wantErr string
	}{
		{"default", DefaultCatalog("/opt/bin").Images, ""},
		{"tag in repository", []Image{{Repository: "a/b:v1", Binary: "/x"}}, `catalog entry "a/b:v1": the repository must be an image reference without tag or digest`},
		{"relative binary", []Image{{Repository: "a/b", Binary: "x"}}, `catalog entry "a/b": binary "x" is not an absolute path`},
		{"twice", []Image{{Repository: "a/b", Binary: "/x"}, {Repository: "a/b", Binary: "/y"}}, `catalog entry "a/b" is listed twice: keep one`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Catalog{Images: tc.images}.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.wantErr {
				t.Errorf("Validate() = %q, want %q", got, tc.wantErr)
			}
		})
	}
}

func TestComposeCommand(t *testing.T) {
	img := Image{Repository: "x/coredns", Binary: "/opt/bin/coredns", Entrypoint: "/coredns", Args: []string{"-conf", "/etc/Corefile"}, Aliases: []string{"coredns"}}
	env := map[string]string{"PORT": "53", "NAME": "dns"}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          commandLine
		wantErr       string
	}{
		{name: "image defaults", want: commandLine{Path: "/opt/bin/coredns", Argv: []string{"/coredns", "-conf", "/etc/Corefile"}}},
		{name: "args replace the default args", args: []string{"-dns.port", "$(PORT)"},
			want: commandLine{Path: "/opt/bin/coredns", Argv: []string{"/coredns", "-dns.port", "53"}}},
		{name: "command drops the default args", command: []string{"/coredns"},
			want: commandLine{Path: "/opt/bin/coredns", Argv: []string{"/coredns"}}},
		{name: "command and args", command: []string{"coredns"}, args: []string{"-x"},
			want: commandLine{Path: "/opt/bin/coredns", Argv: []string{"coredns", "-x"}}},
		{name: "host command by name", command: []string{"sh", "-c", "echo $(NAME) $$(NAME) $(UNSET)"},
			want: commandLine{Argv: []string{"sh", "-c", "echo dns $(NAME) $(UNSET)"}}},
		{name: "host command by path", command: []string{"/bin/true"}, want: commandLine{Path: "/bin/true", Argv: []string{"/bin/true"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := composeCommand(img, &corev1.Container{Name: "c", Command: tc.command, Args: tc.args}, env)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("composeCommand (-want +got):\n%s", diff)
			}
		})
	}
	_, err := composeCommand(Image{Repository: "x/none", Binary: "/b"}, &corev1.Container{Name: "c"}, nil)
	if err == nil || err.Error() != "container c: image x/none has no entrypoint in the sandbox catalog: set `command`" {
		t.Errorf("no entrypoint: got %v", err)
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)":         "1",
		"x$(A)y$(B)z":  "x1ytwoz",
		"$$(A)":        "$(A)",
		"$(C)":         "$(C)",
		"$(A":          "$(A",
		"$":            "$",
		"a$b":          "a$b",
		"$()":          "$()",
		"$$$(A)":       "$1",
		"no variables": "no variables",
	} {
		if got := expand(in, env); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeObjects serves ConfigMaps and Secrets from maps.
type fakeObjects struct {
	cms     map[string]*corev1.ConfigMap
	secrets map[string]*corev1.Secret
}

func (f fakeObjects) ConfigMap(_, name string) (*corev1.ConfigMap, error) {
	if cm, ok := f.cms[name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), name)
}

func (f fakeObjects) Secret(_, name string) (*corev1.Secret, error) {
	if s, ok := f.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
}

func TestResolveEnv(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa", Containers: []corev1.Container{{
			Name: "c",
			Resources: corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
			},
		}}},
	}
	src := fakeObjects{
		cms:     map[string]*corev1.ConfigMap{"cm": {Data: map[string]string{"k": "cv", "B": "from-cm"}}},
		secrets: map[string]*corev1.Secret{"s": {Data: map[string][]byte{"pw": []byte("sv")}}},
	}
	facts := podFacts{PodIPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}, HostIPs: []netip.Addr{netip.MustParseAddr("192.168.1.2")},
		NodeAllocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16")}}
	field := func(p string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: p}}
	}
	c := &pod.Spec.Containers[0]
	c.EnvFrom = []corev1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr.To(true)}}}
	c.Env = []corev1.EnvVar{
		{Name: "NAME", ValueFrom: field("metadata.name")},
		{Name: "NS", ValueFrom: field("metadata.namespace")},
		{Name: "UID", ValueFrom: field("metadata.uid")},
		{Name: "APP", ValueFrom: field("metadata.labels['app']")},
		{Name: "NODE", ValueFrom: field("spec.nodeName")},
		{Name: "SA", ValueFrom: field("spec.serviceAccountName")},
		{Name: "IP", ValueFrom: field("status.podIP")},
		{Name: "HOST", ValueFrom: field("status.hostIPs")},
		{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "CPU_REQ", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
		{Name: "CPU_LIM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
		{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "pw"}}},
		{Name: "CMK", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "k"}}},
		{Name: "OPT", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "nokey", Optional: ptr.To(true)}}},
		{Name: "REF", Value: "$(NAME)@$(FOO_SERVICE_HOST)"},
		{Name: "CM_B", Value: "overridden"},
	}
	services := []envVar{{"FOO_SERVICE_HOST", "10.0.0.7"}, {"NAME", "service-var-loses"}}
	got, err := resolveEnv(pod, c, services, src, facts)
	if err != nil {
		t.Fatal(err)
	}
	want := []envVar{
		{"CM_B", "overridden"}, {"CM_k", "cv"},
		{"NAME", "p"}, {"NS", "ns"}, {"UID", "u-1"}, {"APP", "web"}, {"NODE", "n1"}, {"SA", "sa"},
		{"IP", "10.1.0.5"}, {"HOST", "192.168.1.2"}, {"MEM", "64"}, {"CPU_REQ", "250"}, {"CPU_LIM", "16"},
		{"PW", "sv"}, {"CMK", "cv"}, {"REF", "p@10.0.0.7"},
		{"FOO_SERVICE_HOST", "10.0.0.7"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(envVar{})); diff != "" {
		t.Errorf("resolveEnv (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name    string
		env     corev1.EnvVar
		wantErr string
	}{
		{"missing secret", corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}},
			`env X: secret nope: secrets "nope" not found`},
		{"missing key", corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "nokey"}}},
			`env X: configMap cm has no key "nokey"`},
		{"bad field", corev1.EnvVar{Name: "X", ValueFrom: field("spec.bogus")}, `env X: unsupported fieldRef path "spec.bogus"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &corev1.Container{Name: "c", Env: []corev1.EnvVar{tc.env}}
			_, err := resolveEnv(pod, c, nil, src, facts)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestServiceEnv(t *testing.T) {
	svc := func(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
	}
	services := []*corev1.Service{
		svc("default", "kubernetes", "10.0.0.1", corev1.ServicePort{Name: "https", Port: 443}),
		svc("app", "my-db", "10.0.0.9", corev1.ServicePort{Name: "sql", Port: 5432}, corev1.ServicePort{Name: "metrics", Port: 9100, Protocol: corev1.ProtocolUDP}),
		svc("app", "headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 80}),
		svc("other", "elsewhere", "10.0.0.8", corev1.ServicePort{Port: 80}),
	}
	got := serviceEnv(services, "app", true)
	var lines []string
	for _, v := range got {
		lines = append(lines, v.Name+"="+v.Value)
	}
	want := []string{
		"KUBERNETES_SERVICE_HOST=10.0.0.1", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
		"KUBERNETES_PORT=tcp://10.0.0.1:443", "KUBERNETES_PORT_443_TCP=tcp://10.0.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO=tcp",
		"KUBERNETES_PORT_443_TCP_PORT=443", "KUBERNETES_PORT_443_TCP_ADDR=10.0.0.1",
		"MY_DB_SERVICE_HOST=10.0.0.9", "MY_DB_SERVICE_PORT=5432", "MY_DB_SERVICE_PORT_SQL=5432", "MY_DB_SERVICE_PORT_METRICS=9100",
		"MY_DB_PORT=tcp://10.0.0.9:5432", "MY_DB_PORT_5432_TCP=tcp://10.0.0.9:5432", "MY_DB_PORT_5432_TCP_PROTO=tcp",
		"MY_DB_PORT_5432_TCP_PORT=5432", "MY_DB_PORT_5432_TCP_ADDR=10.0.0.9",
		"MY_DB_PORT_9100_UDP=udp://10.0.0.9:9100", "MY_DB_PORT_9100_UDP_PROTO=udp", "MY_DB_PORT_9100_UDP_PORT=9100", "MY_DB_PORT_9100_UDP_ADDR=10.0.0.9",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("serviceEnv (-want +got):\n%s", diff)
	}
	got = serviceEnv(services, "app", false)
	if len(got) != 8 || got[0].Name != "KUBERNETES_SERVICE_HOST" {
		t.Errorf("with links disabled only the kubernetes Service's variables stay, got %v", got)
	}
}

func TestPodResolvConf(t *testing.T) {
	host := parseResolvConf("# comment\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch corp.example\noptions edns0\n")
	d := dnsSettings{ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local", Host: host}
	pod := func(policy corev1.DNSPolicy, hostNet bool, cfg *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app"}, Spec: corev1.PodSpec{DNSPolicy: policy, HostNetwork: hostNet, DNSConfig: cfg}}
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		want    string
		wantErr string
	}{
		{name: "cluster first", pod: pod("", false, nil),
			want: "search app.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"},
		{name: "host network falls back to default", pod: pod(corev1.DNSClusterFirst, true, nil),
			want: "search corp.example\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions edns0\n"},
		{name: "cluster first with host net", pod: pod(corev1.DNSClusterFirstWithHostNet, true, nil),
			want: "search app.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"},
		{name: "none with config", pod: pod(corev1.DNSNone, false, &corev1.PodDNSConfig{
			Nameservers: []string{"9.9.9.9"}, Searches: []string{"a.example", "a.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}, {Name: "rotate"}},
		}), want: "search a.example\nnameserver 9.9.9.9\noptions ndots:2 rotate\n"},
		{name: "options override", pod: pod("", false, &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("1")}}}),
			want: "search app.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:1\n"},
		{name: "at most three nameservers", pod: pod("", false, &corev1.PodDNSConfig{Nameservers: []string{"1.0.0.1", "1.0.0.2", "1.0.0.3"}}),
			want: "search app.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\nnameserver 1.0.0.1\nnameserver 1.0.0.2\noptions ndots:5\n"},
		{name: "none without config", pod: pod(corev1.DNSNone, false, nil), wantErr: "dnsPolicy None needs dnsConfig: add spec.dnsConfig.nameservers"},
		{name: "unknown policy", pod: pod("Sometimes", false, nil), wantErr: `unknown dnsPolicy "Sometimes": use ClusterFirst, ClusterFirstWithHostNet, Default or None`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := podResolvConf(tc.pod, d)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, rc.String()); diff != "" {
				t.Errorf("resolv.conf (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHostsFile(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "app"}, Spec: corev1.PodSpec{
		Hostname: "web-0", Subdomain: "web",
		HostAliases: []corev1.HostAlias{{IP: "10.9.9.9", Hostnames: []string{"a.example", "b.example"}}},
	}}
	got := hostsFile(pod, netip.MustParseAddr("10.1.0.5"), podHostname(pod, "node1"), "cluster.local")
	want := `# Kubernetes-managed hosts file.
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
10.1.0.5	web-0.web.app.svc.cluster.local	web-0

# Entries added by HostAliases.
10.9.9.9	a.example	b.example
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	pod.Spec.HostNetwork = true
	if h := podHostname(pod, "node1"); h != "node1" {
		t.Errorf("hostNetwork hostname = %q, want the node name", h)
	}
}

func TestFormatMap(t *testing.T) {
	got := formatMap(map[string]string{"b": "2", "a": `say "hi"`})
	if want := "a=\"say \\\"hi\\\"\"\nb=\"2\""; got != want {
		t.Errorf("formatMap = %q, want %q", got, want)
	}
}

func TestCapabilitySet(t *testing.T) {
	names := func(caps []int) string {
		var s []string
		for _, c := range caps {
			s = append(s, capNames[c])
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name    string
		sc      *corev1.SecurityContext
		want    string
		wantErr string
	}{
		{name: "default", want: "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,SETGID,SETUID,SETPCAP,NET_BIND_SERVICE,NET_RAW,SYS_CHROOT,MKNOD,AUDIT_WRITE,SETFCAP"},
		{name: "add and drop", sc: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "CAP_SYS_MODULE"}, Drop: []corev1.Capability{"MKNOD", "NET_RAW", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP"}}},
			want: "NET_ADMIN,SYS_MODULE"},
		{name: "drop all then add, as runtimes do", sc: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}}},
			want: "NET_BIND_SERVICE"},
		{name: "drop all", sc: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}, want: ""},
		{name: "unknown", sc: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"FLY"}}},
			wantErr: `securityContext.capabilities.add: unknown capability "FLY": use a name such as NET_ADMIN (see capabilities(7))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := capabilitySet(tc.sc)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if names(got) != tc.want {
				t.Errorf("capabilitySet = %s, want %s", names(got), tc.want)
			}
		})
	}
	all, err := capabilitySet(&corev1.SecurityContext{Privileged: ptr.To(true)})
	if err != nil || len(all) != len(capNames) {
		t.Errorf("privileged: got %d capabilities (%v), want all %d", len(all), err, len(capNames))
	}
}

func TestCheckNodeLabel(t *testing.T) {
	for key, wantErr := range map[string]bool{
		"submariner.io/gateway":                 false,
		"kubernetes.io/hostname":                false,
		"node.kubernetes.io/exclude-from-lb":    false,
		"topology.kubernetes.io/zone":           false,
		"node-role.kubernetes.io/control-plane": true,
		"node-restriction.kubernetes.io/x":      true,
		"example.k8s.io/x":                      true,
		"plain":                                 false,
	} {
		if err := checkNodeLabel(key); (err != nil) != wantErr {
			t.Errorf("checkNodeLabel(%q) = %v, want error %v", key, err, wantErr)
		}
	}
}

func TestIsNotFoundWrapped(t *testing.T) {
	err := apierrors.NewNotFound(corev1.Resource("configmaps"), "x")
	if !isNotFound(err) || isNotFound(errors.New("other")) {
		t.Error("isNotFound misjudges errors")
	}
}

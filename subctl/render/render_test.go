package render_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/submariner-go/submariner/agents/component"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/subctl/apply"
	"github.com/submariner-go/submariner/subctl/render"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func config(clusterID string) map[string]string {
	return map[string]string{
		"SUBMARINER_CLUSTERID":   clusterID,
		"SUBMARINER_CLUSTERCIDR": "10.1.0.0/16",
		"SUBMARINER_SERVICECIDR": "10.101.0.0/16",
		"SUBMARINER_GLOBALCIDR":  "",
		"SUBMARINER_CABLEDRIVER": "libreswan",
		"SUBMARINER_NATENABLED":  "true",
	}
}

func defaultImages(t *testing.T) map[string]string {
	t.Helper()
	imgs, err := render.Images(manifests.DefaultRepository, "v0.1.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func renderCluster(t *testing.T, driver submv1.Backend, globalnet bool) []*unstructured.Unstructured {
	t.Helper()
	objs, err := render.Cluster(render.ClusterOptions{CableDriver: driver, Globalnet: globalnet, Images: defaultImages(t), Config: config("cluster1")})
	if err != nil {
		t.Fatalf("rendering %s (globalnet %v): %v", driver, globalnet, err)
	}
	return objs
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("converting %s: %v", apply.RefOf(u), err)
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func volumeNames(spec corev1.PodSpec) map[string]corev1.Volume {
	out := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		out[v.Name] = v
	}
	return out
}

func mounts(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, m := range c.VolumeMounts {
		out[m.MountPath] = m.Name
	}
	return out
}

// TestClusterOverlays renders every cable driver with and without Globalnet and
// checks what the components rely on.
func TestClusterOverlays(t *testing.T) {
	for _, driver := range submv1.Backends {
		for _, gn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/globalnet=%v", driver, gn), func(t *testing.T) {
				objs := renderCluster(t, driver, gn)
				checkCommon(t, objs, gn)
				ds := convert[appsv1.DaemonSet](t, find(objs, "DaemonSet", manifests.GatewayDaemonSet))
				checkGateway(t, ds, driver)
			})
		}
	}
}

func checkCommon(t *testing.T, objs []*unstructured.Unstructured, globalnet bool) {
	t.Helper()
	var workloads []string
	accounts := map[string]bool{}
	for _, o := range objs {
		if got := o.GetLabels()[render.ManagedByLabel]; got != render.ManagedByValue {
			t.Errorf("%s is labelled %s=%q, want %q", apply.RefOf(o), render.ManagedByLabel, got, render.ManagedByValue)
		}
		if ns := o.GetNamespace(); ns != "" && ns != submv1.ComponentNamespace {
			t.Errorf("%s is in namespace %s, want %s", apply.RefOf(o), ns, submv1.ComponentNamespace)
		}
		switch o.GetKind() {
		case "DaemonSet", "Deployment":
			workloads = append(workloads, o.GetName())
		case "ServiceAccount":
			accounts[o.GetName()] = true
		}
	}
	sort.Strings(workloads)
	want := []string{manifests.GatewayDaemonSet, manifests.LighthouseAgentDeployment, manifests.LighthouseCoreDNSDeployment, manifests.RouteAgentDaemonSet}
	if globalnet {
		want = append(want, manifests.GlobalnetDaemonSet)
		sort.Strings(want)
	}
	if diff := cmp.Diff(want, workloads); diff != "" {
		t.Errorf("workloads (-want +got):\n%s", diff)
	}
	// Every workload runs as its own ServiceAccount, which some binding grants
	// something, reads submariner-config and knows its node.
	bound := map[string]bool{}
	for _, o := range objs {
		var subjects []rbacv1.Subject
		var ref rbacv1.RoleRef
		switch o.GetKind() {
		case "RoleBinding":
			rb := convert[rbacv1.RoleBinding](t, o)
			subjects, ref = rb.Subjects, rb.RoleRef
		case "ClusterRoleBinding":
			crb := convert[rbacv1.ClusterRoleBinding](t, o)
			subjects, ref = crb.Subjects, crb.RoleRef
		default:
			continue
		}
		if find(objs, ref.Kind, ref.Name) == nil {
			t.Errorf("%s refers to %s %s, which the manifests do not hold", apply.RefOf(o), ref.Kind, ref.Name)
		}
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" {
				if s.Namespace != submv1.ComponentNamespace {
					t.Errorf("%s binds ServiceAccount %s in namespace %q", apply.RefOf(o), s.Name, s.Namespace)
				}
				bound[s.Name] = true
			}
		}
	}
	seenAccounts := map[string]string{}
	for _, o := range objs {
		var spec corev1.PodSpec
		switch o.GetKind() {
		case "DaemonSet":
			spec = convert[appsv1.DaemonSet](t, o).Spec.Template.Spec
		case "Deployment":
			spec = convert[appsv1.Deployment](t, o).Spec.Template.Spec
		default:
			continue
		}
		sa := spec.ServiceAccountName
		if !accounts[sa] || !bound[sa] {
			t.Errorf("%s runs as ServiceAccount %q, which is missing or bound to nothing", o.GetName(), sa)
		}
		if other, dup := seenAccounts[sa]; dup {
			t.Errorf("%s and %s share ServiceAccount %s", other, o.GetName(), sa)
		}
		seenAccounts[sa] = o.GetName()
		annotations, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "annotations")
		if annotations[render.ConfigHashAnnotation] == "" {
			t.Errorf("%s has no %s on its pod template", o.GetName(), render.ConfigHashAnnotation)
		}
		for _, c := range spec.Containers {
			if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != manifests.ConfigMapName {
				t.Errorf("%s/%s does not read its environment from %s", o.GetName(), c.Name, manifests.ConfigMapName)
			}
			// Only the components that talk to the broker get its credentials.
			_, hasBroker := mounts(c)[component.DefaultBrokerSecretDir]
			wantBroker := o.GetName() == manifests.GatewayDaemonSet || o.GetName() == manifests.LighthouseAgentDeployment
			if hasBroker != wantBroker {
				t.Errorf("%s mounts the broker Secret: %v, want %v", o.GetName(), hasBroker, wantBroker)
			}
		}
	}
	cm := convert[corev1.ConfigMap](t, find(objs, "ConfigMap", manifests.ConfigMapName))
	for _, key := range []string{"SUBMARINER_NAMESPACE", "SUBMARINER_CLUSTERID", "BROKER_K8S_REMOTENAMESPACE", "BROKER_K8S_SECRET_DIR", "SUBMARINER_CABLEDRIVER"} {
		if _, ok := cm.Data[key]; !ok {
			t.Errorf("%s has no key %s", manifests.ConfigMapName, key)
		}
	}
	if cm.Data["SUBMARINER_CLUSTERID"] != "cluster1" || cm.Data["BROKER_K8S_SECRET_DIR"] != component.DefaultBrokerSecretDir {
		t.Errorf("%s does not carry the configuration: %v", manifests.ConfigMapName, cm.Data)
	}
	if gn := find(objs, "DaemonSet", manifests.GlobalnetDaemonSet); gn != nil {
		ds := convert[appsv1.DaemonSet](t, gn)
		spec := ds.Spec.Template.Spec
		if spec.NodeSelector[submv1.GatewayLabel] != "true" || !spec.HostNetwork || !privileged(spec.Containers[0]) ||
			spec.Containers[0].Ports[0].ContainerPort != 32781 {
			t.Errorf("globalnet DaemonSet is not on the gateway nodes, host network, privileged with metrics on 32781: %+v", spec)
		}
	}
	ra := convert[appsv1.DaemonSet](t, find(objs, "DaemonSet", manifests.RouteAgentDaemonSet))
	if len(ra.Spec.Template.Spec.NodeSelector) != 0 || !ra.Spec.Template.Spec.HostNetwork || !privileged(ra.Spec.Template.Spec.Containers[0]) ||
		ra.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.String() != "100%" {
		t.Errorf("routeagent DaemonSet is not on every node, host network, privileged, maxUnavailable 100%%: %+v", ra.Spec)
	}
	svc := convert[corev1.Service](t, find(objs, "Service", manifests.LighthouseCoreDNSService))
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s/%d/%s", p.Name, p.Port, p.Protocol))
	}
	if diff := cmp.Diff([]string{"dns/53/UDP", "dns-tcp/53/TCP", "metrics/9153/TCP"}, ports); diff != "" {
		t.Errorf("lighthouse CoreDNS Service ports (-want +got):\n%s", diff)
	}
}

func privileged(c corev1.Container) bool {
	return c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
}

func checkGateway(t *testing.T, ds *appsv1.DaemonSet, driver submv1.Backend) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	if spec.NodeSelector[submv1.GatewayLabel] != "true" || !spec.HostNetwork || !privileged(c) ||
		spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != 1 ||
		len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("gateway DaemonSet: want gateway nodes, host network, privileged, grace 1s, every taint tolerated; got %+v", spec)
	}
	var ports []string
	for _, p := range c.Ports {
		ports = append(ports, fmt.Sprintf("%s %d/%s host %d", p.Name, p.ContainerPort, p.Protocol, p.HostPort))
	}
	if diff := cmp.Diff([]string{"cable-encaps 4500/UDP host 4500", "natt-discovery 4490/UDP host 4490", "metrics 32780/TCP host 0"}, ports); diff != "" {
		t.Errorf("gateway ports (-want +got):\n%s", diff)
	}
	vols, m := volumeNames(spec), mounts(c)
	pskDir := "/run/secrets/submariner.io/" + manifests.PSKSecretName
	hasPSK := m[pskDir] != "" && vols[m[pskDir]].Secret != nil && vols[m[pskDir]].Secret.SecretName == manifests.PSKSecretName
	envs := map[string]string{}
	for _, e := range c.Env {
		envs[e.Name] = e.Value
	}
	switch driver {
	case submv1.BackendLibreswan:
		for _, dir := range []string{"/etc/ipsec.d", "/var/lib/ipsec/nss", "/run/pluto"} {
			if v, ok := vols[m[dir]]; !ok || v.EmptyDir == nil {
				t.Errorf("libreswan gateway: %s is not an emptyDir", dir)
			}
		}
		if !hasPSK || envs[manifests.PSKFileEnv] != pskDir+"/"+manifests.PSKSecretKey {
			t.Errorf("libreswan gateway: the pre-shared key is not mounted and named by %s", manifests.PSKFileEnv)
		}
	case submv1.BackendWireGuard:
		if v, ok := vols[m["/dev/net/tun"]]; !ok || v.HostPath == nil || v.HostPath.Path != "/dev/net/tun" {
			t.Errorf("wireguard gateway: /dev/net/tun is not mounted from the host")
		}
		if !hasPSK {
			t.Errorf("wireguard gateway: the pre-shared key is not mounted")
		}
	case submv1.BackendVXLAN:
		if hasPSK || len(vols) != 1 {
			t.Errorf("vxlan gateway: want only the broker Secret mounted (no key, no devices), got %v", vols)
		}
	}
}

func TestImages(t *testing.T) {
	overrides, err := render.ParseImageOverrides([]string{
		"submariner-gateway=registry.example.com:5000/gw:v9",
		"lighthouse-coredns=registry.example.com/coredns@sha256:0123",
	})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := render.Images("quay.io/acme/", "v1.2", overrides)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := render.Cluster(render.ClusterOptions{CableDriver: submv1.BackendVXLAN, Globalnet: true, Images: imgs, Config: config("c1")})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range objs {
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			got[o.GetName()] = c.(map[string]any)["image"].(string)
		}
	}
	want := map[string]string{
		manifests.GatewayDaemonSet:            "registry.example.com:5000/gw:v9",
		manifests.RouteAgentDaemonSet:         "quay.io/acme/submariner-route-agent:v1.2",
		manifests.GlobalnetDaemonSet:          "quay.io/acme/submariner-globalnet:v1.2",
		manifests.LighthouseAgentDeployment:   "quay.io/acme/lighthouse-agent:v1.2",
		manifests.LighthouseCoreDNSDeployment: "registry.example.com/coredns@sha256:0123",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{[]string{"gateway"}, `--image-override "gateway" is not component=image`},
		{[]string{"a=x", "a=y"}, "--image-override gives two images for a: x and y"},
	} {
		if _, err := render.ParseImageOverrides(tc.values); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseImageOverrides(%v) = %v, want %q", tc.values, err, tc.want)
		}
	}
	if _, err := render.Images("r", "v", map[string]string{"gateway": "x"}); err == nil ||
		!strings.Contains(err.Error(), `unknown component "gateway": use one of submariner-gateway, submariner-route-agent, submariner-globalnet, lighthouse-agent, lighthouse-coredns`) {
		t.Errorf("an unknown component was not refused: %v", err)
	}
}

// TestConfigHash checks that the pod templates change exactly when the
// configuration does, so the workloads restart on new settings and only then.
func TestConfigHash(t *testing.T) {
	hash := func(cfg map[string]string) string {
		objs, err := render.Cluster(render.ClusterOptions{CableDriver: submv1.BackendVXLAN, Images: defaultImages(t), Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		a, _, _ := unstructured.NestedStringMap(find(objs, "DaemonSet", manifests.GatewayDaemonSet).Object, "spec", "template", "metadata", "annotations")
		return a[render.ConfigHashAnnotation]
	}
	a, b, c := hash(config("cluster1")), hash(config("cluster1")), hash(config("cluster2"))
	if a != b {
		t.Errorf("the same configuration gave two hashes: %s, %s", a, b)
	}
	if a == c {
		t.Errorf("a new cluster ID left the hash at %s", a)
	}
}

// TestGolden compares whole renderings with testdata/*.golden.yaml (-update
// rewrites them), so every change to what subctl installs shows in review.
func TestGolden(t *testing.T) {
	broker, err := render.Broker()
	if err != nil {
		t.Fatal(err)
	}
	for name, objs := range map[string][]*unstructured.Unstructured{
		"cluster-libreswan-globalnet": renderCluster(t, submv1.BackendLibreswan, true),
		"broker":                      broker,
	} {
		t.Run(name, func(t *testing.T) {
			sorted := append([]*unstructured.Unstructured(nil), objs...)
			apply.Sort(sorted)
			var b strings.Builder
			for _, o := range sorted {
				y, err := yaml.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				b.WriteString("---\n")
				b.Write(y)
			}
			path := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("rendering differs from %s (-want +got; go test -update rewrites it):\n%s", path, diff)
			}
		})
	}
}

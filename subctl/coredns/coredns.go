// Package coredns makes the cluster's own CoreDNS forward clusterset.local to the
// lighthouse CoreDNS, and undoes it. It edits the Corefile in the kube-system/coredns
// ConfigMap, adding one server block between marker comments (so that it is
// replaced, not duplicated, on a second join, and removed cleanly on uninstall),
// or, with a custom ConfigMap, writes the block as the key lighthouse.server there
// (for CoreDNS deployments that `import` such files, as AKS and k3s do).
package coredns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/submariner-go/submariner/manifests"
)

// The markers around our block, Submariner's, and the other fixed names.
const (
	StartMarker = "#lighthouse-start AUTO-GENERATED SECTION. DO NOT EDIT"
	EndMarker   = "#lighthouse-end"
	// Zone is the clusterset's DNS zone.
	Zone = "clusterset.local"
	// CorefileKey is the Corefile's key in the CoreDNS ConfigMap.
	CorefileKey = "Corefile"
	// CustomKey is our key in a custom ConfigMap.
	CustomKey = "lighthouse.server"
	// DefaultNamespace and DefaultName locate the cluster's CoreDNS ConfigMap.
	DefaultNamespace = "kube-system"
	DefaultName      = "coredns"
	// DefaultPort is the DNS port when the Corefile does not name one.
	DefaultPort = 53
)

var forwardTemplate = template.Must(template.ParseFS(manifests.FS, manifests.CorednsForwardTemplate))

// Block renders the server block that forwards Zone to upstream, on port.
func Block(port int, upstream netip.Addr) (string, error) {
	var b bytes.Buffer
	if err := forwardTemplate.Execute(&b, struct {
		Zone     string
		Port     int
		Upstream string
	}{Zone, port, upstream.String()}); err != nil {
		return "", fmt.Errorf("rendering the CoreDNS block: %w", err)
	}
	return b.String(), nil
}

// rootBlock matches the opening of the root server block: ".:53 {", ". {", "dns://.:53 {".
var rootBlock = regexp.MustCompile(`(?m)^\s*(?:dns://)?\.(?::(\d+))?\s*\{`)

// ServerPort returns the port of the Corefile's root (".") server block, or
// DefaultPort when it names none.
func ServerPort(corefile string) int {
	m := rootBlock.FindStringSubmatch(corefile)
	if m == nil || m[1] == "" {
		return DefaultPort
	}
	port, err := strconv.Atoi(m[1])
	if err != nil || port <= 0 || port > 65535 {
		return DefaultPort
	}
	return port
}

// Patch returns corefile with our block for upstream in front, replacing the block
// a previous Patch added. It is idempotent.
func Patch(corefile string, upstream netip.Addr) (string, error) {
	rest, _, err := cut(corefile)
	if err != nil {
		return "", err
	}
	block, err := Block(ServerPort(rest), upstream)
	if err != nil {
		return "", err
	}
	return StartMarker + "\n" + block + EndMarker + "\n" + rest, nil
}

// Unpatch returns corefile without our block, and whether it had one.
func Unpatch(corefile string) (string, bool, error) {
	rest, found, err := cut(corefile)
	return rest, found, err
}

// cut removes the marked section (markers included).
func cut(corefile string) (string, bool, error) {
	start := strings.Index(corefile, StartMarker)
	end := strings.Index(corefile, EndMarker)
	switch {
	case start < 0 && end < 0:
		return corefile, false, nil
	case start < 0 || end < start:
		return "", false, fmt.Errorf("the Corefile has a %q marker without its %q partner: remove the half-edited section by hand and run again", EndMarker, StartMarker)
	}
	after := end + len(EndMarker)
	if after < len(corefile) && corefile[after] == '\n' {
		after++
	}
	return corefile[:start] + corefile[after:], true, nil
}

// ErrNoConfigMap says that the CoreDNS ConfigMap does not exist.
var ErrNoConfigMap = errors.New("no CoreDNS ConfigMap")

// Target is the ConfigMap to edit.
type Target struct {
	Namespace, Name string
	// Custom writes CustomKey instead of editing the Corefile.
	Custom bool
}

// DefaultTarget is the cluster's CoreDNS ConfigMap as kubeadm makes it.
var DefaultTarget = Target{Namespace: DefaultNamespace, Name: DefaultName}

// ParseCustom parses --coredns-custom-configmap namespace/name.
func ParseCustom(s string) (Target, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return Target{}, fmt.Errorf("--coredns-custom-configmap %q is not namespace/name, for example kube-system/coredns-custom", s)
	}
	return Target{Namespace: ns, Name: name, Custom: true}, nil
}

// String renders the target for messages and the inventory ("kube-system/coredns",
// "custom:kube-system/coredns-custom").
func (t Target) String() string {
	s := t.Namespace + "/" + t.Name
	if t.Custom {
		return "custom:" + s
	}
	return s
}

// ParseTarget reads the String form.
func ParseTarget(s string) (Target, error) {
	if c, ok := strings.CutPrefix(s, "custom:"); ok {
		return ParseCustom(c)
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		return Target{}, fmt.Errorf("CoreDNS ConfigMap %q is not namespace/name", s)
	}
	return Target{Namespace: ns, Name: name}, nil
}

var conflictBackoff = wait.Backoff{Steps: 20, Duration: 20 * time.Millisecond, Factor: 1.5, Jitter: 0.5, Cap: time.Second}

// Apply makes the target forward Zone to upstream and reports whether it changed
// anything. Without the ConfigMap it returns ErrNoConfigMap (wrapped), except in
// custom mode, where it creates it, labelled with labels.
func (t Target) Apply(ctx context.Context, kube kubernetes.Interface, upstream netip.Addr, labels map[string]string) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		changed = false
		api := kube.CoreV1().ConfigMaps(t.Namespace)
		cm, err := api.Get(ctx, t.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && t.Custom {
			block, err := Block(t.port(ctx, kube), upstream)
			if err != nil {
				return err
			}
			_, err = api.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: t.Name, Namespace: t.Namespace, Labels: labels},
				Data:       map[string]string{CustomKey: block},
			}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), t.Name, err)
			}
			changed = err == nil
			return err
		}
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w %s", ErrNoConfigMap, t)
		}
		if err != nil {
			return fmt.Errorf("reading the CoreDNS ConfigMap %s: %w", t, err)
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		var next string
		key := CorefileKey
		if t.Custom {
			key = CustomKey
			next, err = Block(t.port(ctx, kube), upstream)
		} else {
			if _, ok := cm.Data[CorefileKey]; !ok {
				return fmt.Errorf("the CoreDNS ConfigMap %s has no %s key: point --coredns-custom-configmap at the ConfigMap your CoreDNS imports", t, CorefileKey)
			}
			next, err = Patch(cm.Data[CorefileKey], upstream)
		}
		if err != nil {
			return fmt.Errorf("CoreDNS ConfigMap %s: %w", t, err)
		}
		if cm.Data[key] == next {
			return nil
		}
		cm.Data[key] = next
		if _, err := api.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil && !errors.Is(err, ErrNoConfigMap) {
		return false, fmt.Errorf("making CoreDNS forward %s: %w", Zone, err)
	}
	return changed, err
}

// port is the DNS port of the cluster's CoreDNS, read from the default ConfigMap.
func (t Target) port(ctx context.Context, kube kubernetes.Interface) int {
	cm, err := kube.CoreV1().ConfigMaps(DefaultNamespace).Get(ctx, DefaultName, metav1.GetOptions{})
	if err != nil {
		return DefaultPort
	}
	return ServerPort(cm.Data[CorefileKey])
}

// Remove undoes Apply and reports whether it changed anything. A custom ConfigMap
// that Apply created (it carries managedBy as app.kubernetes.io/managed-by) and
// that holds nothing else is deleted.
func (t Target) Remove(ctx context.Context, kube kubernetes.Interface, managedBy string) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		changed = false
		api := kube.CoreV1().ConfigMaps(t.Namespace)
		cm, err := api.Get(ctx, t.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		cm = cm.DeepCopy()
		if t.Custom {
			if _, ok := cm.Data[CustomKey]; !ok {
				return nil
			}
			delete(cm.Data, CustomKey)
			if len(cm.Data) == 0 && len(cm.BinaryData) == 0 && cm.Labels["app.kubernetes.io/managed-by"] == managedBy {
				uid := cm.UID
				err := api.Delete(ctx, t.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &cm.ResourceVersion}})
				changed = err == nil
				return err
			}
		} else {
			rest, found, err := Unpatch(cm.Data[CorefileKey])
			if err != nil {
				return err
			}
			if !found {
				return nil
			}
			cm.Data[CorefileKey] = rest
		}
		if _, err := api.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("removing the %s forwarding from CoreDNS ConfigMap %s: %w", Zone, t, err)
	}
	return changed, nil
}

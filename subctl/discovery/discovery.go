// Package discovery finds a cluster's Pod and Service CIDRs when the user did not
// give them, from the sources a cluster offers, in a fixed order, and says which
// source answered:
//
//	services: ServiceCIDR objects (networking.k8s.io/v1, Kubernetes 1.33+), the
//	          kube-apiserver pod's --service-cluster-ip-range, the kubeadm-config
//	          ConfigMap's networking.serviceSubnet
//	pods:     the kube-controller-manager pod's --cluster-cidr, the kubeadm-config
//	          ConfigMap's networking.podSubnet, then the smallest prefix covering
//	          the nodes' podCIDRs (a guess, and reported as one)
//
// Submariner carries IPv4 only, so IPv6 ranges are left out with a warning.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// Found is a discovered set of CIDRs and where it came from.
type Found struct {
	CIDRs []netip.Prefix
	// Source names where the CIDRs came from, for the user
	// ("the kube-controller-manager pod's --cluster-cidr").
	Source string
	// Guess is set when the CIDRs were inferred rather than read from configuration.
	Guess bool
}

// Result is what Discover found.
type Result struct {
	Cluster, Service Found
	// Warnings tell the user about guesses and left-out ranges.
	Warnings []string
}

// NotFoundError says that no source knew the CIDRs and what was tried.
type NotFoundError struct {
	What, Flag string
	Tried      []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("could not discover the cluster's %s (tried %s): give it with %s", e.What, strings.Join(e.Tried, "; "), e.Flag)
}

// Discoverer reads a cluster's configuration.
type Discoverer struct {
	Kube kubernetes.Interface
}

// Discover finds the Pod CIDRs (when cluster is set) and the Service CIDRs (when
// service is set).
func (d Discoverer) Discover(ctx context.Context, cluster, service bool) (Result, error) {
	var res Result
	var errs []error
	kubeadm, kubeadmErr := d.kubeadmNetworking(ctx)
	if service {
		f, warns, err := d.services(ctx, kubeadm, kubeadmErr)
		res.Service, res.Warnings = f, append(res.Warnings, warns...)
		errs = append(errs, err)
	}
	if cluster {
		f, warns, err := d.pods(ctx, kubeadm, kubeadmErr)
		res.Cluster, res.Warnings = f, append(res.Warnings, warns...)
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

type kubeadmNetworking struct {
	PodSubnet     string `json:"podSubnet"`
	ServiceSubnet string `json:"serviceSubnet"`
}

// kubeadmNetworking reads kube-system/kubeadm-config; nil without error when absent.
func (d Discoverer) kubeadmNetworking(ctx context.Context) (*kubeadmNetworking, error) {
	cm, err := d.Kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubeadm-config", metav1.GetOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/kubeadm-config: %w", err)
	}
	var cc struct {
		Networking kubeadmNetworking `json:"networking"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &cc); err != nil {
		return nil, fmt.Errorf("reading kube-system/kubeadm-config ClusterConfiguration: %w", err)
	}
	return &cc.Networking, nil
}

func (d Discoverer) services(ctx context.Context, kubeadm *kubeadmNetworking, kubeadmErr error) (Found, []string, error) {
	var tried []string
	var warns []string

	const srcCIDR = "the ServiceCIDR objects"
	list, err := d.Kube.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	switch {
	case err == nil:
		var raw []string
		for _, sc := range list.Items {
			if sc.DeletionTimestamp == nil {
				raw = append(raw, sc.Spec.CIDRs...)
			}
		}
		if f, w, ok := parseList(raw, srcCIDR); ok {
			return f, w, nil
		}
		tried = append(tried, srcCIDR+" (none)")
	case apierrors.IsNotFound(err):
		tried = append(tried, srcCIDR+" (not served: Kubernetes older than 1.33)")
	default:
		tried = append(tried, fmt.Sprintf("%s (%v)", srcCIDR, err))
	}

	f, w, ok, t := d.fromPodFlag(ctx, "kube-apiserver", "--service-cluster-ip-range")
	warns = append(warns, w...)
	if ok {
		return f, warns, nil
	}
	tried = append(tried, t)

	f, w, ok, t = fromKubeadm(kubeadm, kubeadmErr, func(n *kubeadmNetworking) string { return n.ServiceSubnet }, "networking.serviceSubnet")
	warns = append(warns, w...)
	if ok {
		return f, warns, nil
	}
	tried = append(tried, t)
	return Found{}, warns, &NotFoundError{What: "Service CIDR", Flag: "--servicecidr", Tried: tried}
}

func (d Discoverer) pods(ctx context.Context, kubeadm *kubeadmNetworking, kubeadmErr error) (Found, []string, error) {
	var tried, warns []string
	f, w, ok, t := d.fromPodFlag(ctx, "kube-controller-manager", "--cluster-cidr")
	warns = append(warns, w...)
	if ok {
		return f, warns, nil
	}
	tried = append(tried, t)

	f, w, ok, t = fromKubeadm(kubeadm, kubeadmErr, func(n *kubeadmNetworking) string { return n.PodSubnet }, "networking.podSubnet")
	warns = append(warns, w...)
	if ok {
		return f, warns, nil
	}
	tried = append(tried, t)

	const srcNodes = "the nodes' podCIDRs"
	nodes, err := d.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		tried = append(tried, fmt.Sprintf("%s (%v)", srcNodes, err))
		return Found{}, warns, &NotFoundError{What: "Pod CIDR", Flag: "--clustercidr", Tried: tried}
	}
	var raw []string
	for _, n := range nodes.Items {
		if len(n.Spec.PodCIDRs) > 0 {
			raw = append(raw, n.Spec.PodCIDRs...)
		} else if n.Spec.PodCIDR != "" {
			raw = append(raw, n.Spec.PodCIDR)
		}
	}
	f, w, ok = parseList(raw, srcNodes)
	warns = append(warns, w...)
	if !ok {
		tried = append(tried, srcNodes+" (no node has one)")
		return Found{}, warns, &NotFoundError{What: "Pod CIDR", Flag: "--clustercidr", Tried: tried}
	}
	cover := Cover(f.CIDRs)
	warns = append(warns, fmt.Sprintf("the Pod CIDR %s is a guess: it is the smallest range covering the %d node podCIDRs (%s); if the cluster's Pod range is larger, give it with --clustercidr",
		cover, len(f.CIDRs), joinPrefixes(f.CIDRs)))
	return Found{CIDRs: []netip.Prefix{cover}, Source: srcNodes, Guess: true}, warns, nil
}

// fromPodFlag reads flag from the command line of the control-plane pod named
// component in kube-system (label component=<component>, as kubeadm labels its
// static pods). It returns what it tried when it found nothing.
func (d Discoverer) fromPodFlag(ctx context.Context, component, flag string) (Found, []string, bool, string) {
	src := fmt.Sprintf("the %s pod's %s", component, flag)
	pods, err := d.Kube.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "component=" + component})
	if err != nil {
		return Found{}, nil, false, fmt.Sprintf("%s (%v)", src, err)
	}
	if len(pods.Items) == 0 {
		return Found{}, nil, false, fmt.Sprintf("%s (no pod labelled component=%s in kube-system)", src, component)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for _, p := range pods.Items {
		if v, ok := flagValue(p, flag); ok {
			f, w, ok := parseList(strings.Split(v, ","), src)
			if ok {
				return f, w, true, ""
			}
			return Found{}, w, false, fmt.Sprintf("%s (%q has no IPv4 CIDR)", src, v)
		}
	}
	return Found{}, nil, false, fmt.Sprintf("%s (not set)", src)
}

// flagValue finds --flag=value or --flag value in the pod's containers' command lines.
func flagValue(p corev1.Pod, flag string) (string, bool) {
	for _, c := range p.Spec.Containers {
		args := append(append([]string{}, c.Command...), c.Args...)
		for i, a := range args {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v, true
			}
			if a == flag && i+1 < len(args) {
				return args[i+1], true
			}
		}
	}
	return "", false
}

func fromKubeadm(n *kubeadmNetworking, err error, field func(*kubeadmNetworking) string, name string) (Found, []string, bool, string) {
	src := "the kubeadm-config ConfigMap's " + name
	if err != nil {
		return Found{}, nil, false, fmt.Sprintf("%s (%v)", src, err)
	}
	if n == nil {
		return Found{}, nil, false, src + " (no kube-system/kubeadm-config)"
	}
	v := field(n)
	if v == "" {
		return Found{}, nil, false, src + " (not set)"
	}
	f, w, ok := parseList(strings.Split(v, ","), src)
	if !ok {
		return Found{}, w, false, fmt.Sprintf("%s (%q has no IPv4 CIDR)", src, v)
	}
	return f, w, true, ""
}

// parseList parses the CIDRs in raw, keeping IPv4 ones, sorted and de-duplicated.
func parseList(raw []string, src string) (Found, []string, bool) {
	var warns []string
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, s := range raw {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			warns = append(warns, fmt.Sprintf("%s lists %q, which is not a CIDR; left out", src, s))
			continue
		}
		p = p.Masked()
		if !p.Addr().Is4() {
			warns = append(warns, fmt.Sprintf("%s lists the IPv6 range %s, left out: Submariner connects IPv4 only", src, p))
			continue
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Addr().Less(out[j].Addr()) || (out[i].Addr() == out[j].Addr() && out[i].Bits() < out[j].Bits())
	})
	return Found{CIDRs: out, Source: src}, warns, len(out) > 0
}

// Cover returns the smallest IPv4 prefix that contains every prefix of ps.
func Cover(ps []netip.Prefix) netip.Prefix {
	if len(ps) == 0 {
		return netip.Prefix{}
	}
	lo, hi := ^uint32(0), uint32(0)
	for _, p := range ps {
		b := p.Masked().Addr().As4()
		first := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		last := first | (1<<(32-p.Bits()) - 1)
		lo, hi = min(lo, first), max(hi, last)
	}
	common := bits.LeadingZeros32(lo ^ hi)
	p, _ := netip.AddrFrom4([4]byte{byte(lo >> 24), byte(lo >> 16), byte(lo >> 8), byte(lo)}).Prefix(common)
	return p
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

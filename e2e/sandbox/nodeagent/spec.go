package nodeagent

// The pure parts of turning a pod spec into a process: command line, environment,
// resolv.conf and /etc/hosts. No I/O here; the data a function needs comes in as
// arguments, so the tables in spec_test.go cover them.

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
)

// defaultPath is the PATH of a container whose env does not set one (the value
// container runtimes use).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// commandLine is what a container runs: Path is the file to execute ("" to look
// Argv[0] up in the container's PATH) and Argv the argument vector, Argv[0] as the
// image would see it.
type commandLine struct {
	Path string
	Argv []string
}

// composeCommand applies Docker's rules to a container and its catalog image:
// `command` replaces the image's entrypoint and `args` its default arguments (and
// `command` alone drops the default arguments). $(VAR) references are expanded
// against env. Argv[0] naming the image's entrypoint runs the catalog binary.
func composeCommand(img Image, c *corev1.Container, env map[string]string) (commandLine, error) {
	command := expandAll(c.Command, env)
	args := expandAll(c.Args, env)
	var argv []string
	switch {
	case len(command) > 0:
		argv = append(command, args...)
	case img.Entrypoint == "":
		return commandLine{}, fmt.Errorf("container %s: image %s has no entrypoint in the sandbox catalog: set `command`", c.Name, img.Repository)
	case len(args) > 0:
		argv = append([]string{img.Entrypoint}, args...)
	default:
		argv = append([]string{img.Entrypoint}, img.Args...)
	}
	cl := commandLine{Argv: argv}
	switch {
	case img.runs(argv[0]):
		cl.Path = img.Binary
	case strings.Contains(argv[0], "/"):
		cl.Path = argv[0]
	}
	return cl, nil
}

func expandAll(in []string, env map[string]string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expand(s, env)
	}
	return out
}

// expand replaces $(NAME) with env[NAME] as the API documents for command, args
// and env values: "$$" is an escaped "$", a reference to an undefined name stays
// as written, and so does an unterminated "$(".
func expand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok && name != "" {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// podFacts are the values of a pod that only the node knows, for fieldRef and the
// downward API.
type podFacts struct {
	PodIPs  []netip.Addr
	HostIPs []netip.Addr
	// NodeAllocatable stands in for unset limits in resourceFieldRef.
	NodeAllocatable corev1.ResourceList
}

// fieldValue returns the value of a fieldRef path for the pod, as the downward API
// defines them.
func fieldValue(pod *corev1.Pod, path string, facts podFacts) (string, error) {
	if key, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[key], nil
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[key], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return firstAddr(facts.PodIPs), nil
	case "status.podIPs":
		return joinAddrs(facts.PodIPs), nil
	case "status.hostIP":
		return firstAddr(facts.HostIPs), nil
	case "status.hostIPs":
		return joinAddrs(facts.HostIPs), nil
	}
	return "", fmt.Errorf("unsupported fieldRef path %q", path)
}

// subscript parses "prefix['key']".
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// formatMap renders labels or annotations as the downward API does: one
// key="value" line per entry, sorted by key, values quoted like Go strings.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, k+"="+strconv.Quote(m[k]))
	}
	return strings.Join(lines, "\n")
}

func firstAddr(addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return ""
	}
	return addrs[0].String()
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// resourceValue returns a resourceFieldRef's value: the container's limit or
// request divided by the divisor and rounded up; unset limits stand at the node's
// allocatable.
func resourceValue(pod *corev1.Pod, ref *corev1.ResourceFieldSelector, facts podFacts) (string, error) {
	c := findContainer(pod, ref.ContainerName)
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef names container %q, which the pod does not have", ref.ContainerName)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("unsupported resourceFieldRef resource %q", ref.Resource)
	}
	var q resource.Quantity
	var set bool
	if kind == "limits" {
		q, set = c.Resources.Limits[corev1.ResourceName(name)]
		if !set {
			q, set = facts.NodeAllocatable[corev1.ResourceName(name)]
		}
	} else {
		q, set = c.Resources.Requests[corev1.ResourceName(name)]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if !set {
		return "0", nil
	}
	if name == string(corev1.ResourceCPU) {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// objectSource reads the ConfigMaps and Secrets that env and volumes refer to.
// A missing object is reported by an error for which isNotFound is true.
type objectSource interface {
	ConfigMap(namespace, name string) (*corev1.ConfigMap, error)
	Secret(namespace, name string) (*corev1.Secret, error)
}

// envVar is one resolved environment variable.
type envVar struct{ Name, Value string }

// resolveEnv computes a container's environment as the kubelet does: envFrom in
// order, then env in order (later definitions replace earlier ones and values may
// refer to earlier ones and to service variables with $(NAME)), then the service
// variables that are not already defined. It returns the variables in that order.
func resolveEnv(pod *corev1.Pod, c *corev1.Container, services []envVar, src objectSource, facts podFacts) ([]envVar, error) {
	var out []envVar
	index := map[string]int{}
	set := func(name, value string) {
		if i, ok := index[name]; ok {
			out[i].Value = value
			return
		}
		index[name] = len(out)
		out = append(out, envVar{name, value})
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := src.ConfigMap(pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if isNotFound(err) && optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom configMap %s: %w", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := src.Secret(pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if isNotFound(err) && optional(from.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %s: %w", from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(from.Prefix+k, data[k])
		}
	}
	serviceMap := map[string]string{}
	for _, v := range services {
		serviceMap[v.Name] = v.Value
	}
	for _, e := range c.Env {
		value, skip, err := envValue(pod, c.Name, e, src, facts)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if skip {
			continue
		}
		if e.ValueFrom == nil {
			mapping := make(map[string]string, len(serviceMap)+len(out))
			for k, v := range serviceMap {
				mapping[k] = v
			}
			for _, v := range out {
				mapping[v.Name] = v.Value
			}
			value = expand(value, mapping)
		}
		set(e.Name, value)
	}
	for _, v := range services {
		if _, ok := index[v.Name]; !ok {
			set(v.Name, v.Value)
		}
	}
	return out, nil
}

// envValue resolves one env entry; skip is true for an optional reference to a
// missing object or key.
func envValue(pod *corev1.Pod, container string, e corev1.EnvVar, src objectSource, facts podFacts) (string, bool, error) {
	from := e.ValueFrom
	switch {
	case from == nil:
		return e.Value, false, nil
	case from.FieldRef != nil:
		v, err := fieldValue(pod, from.FieldRef.FieldPath, facts)
		return v, false, err
	case from.ResourceFieldRef != nil:
		ref := from.ResourceFieldRef.DeepCopy()
		if ref.ContainerName == "" {
			ref.ContainerName = container
		}
		v, err := resourceValue(pod, ref, facts)
		return v, false, err
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := src.ConfigMap(pod.Namespace, ref.Name)
		if err != nil {
			if isNotFound(err) && optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configMap %s: %w", ref.Name, err)
		}
		if v, ok := cm.Data[ref.Key]; ok {
			return v, false, nil
		}
		if v, ok := cm.BinaryData[ref.Key]; ok {
			return string(v), false, nil
		}
		if optional(ref.Optional) {
			return "", true, nil
		}
		return "", false, fmt.Errorf("configMap %s has no key %q", ref.Name, ref.Key)
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := src.Secret(pod.Namespace, ref.Name)
		if err != nil {
			if isNotFound(err) && optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %s: %w", ref.Name, err)
		}
		if v, ok := s.Data[ref.Key]; ok {
			return string(v), false, nil
		}
		if optional(ref.Optional) {
			return "", true, nil
		}
		return "", false, fmt.Errorf("secret %s has no key %q", ref.Name, ref.Key)
	}
	return "", false, fmt.Errorf("unsupported valueFrom")
}

func optional(b *bool) bool { return b != nil && *b }

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// serviceEnv returns the service link variables of a pod in namespace ns: those
// of every Service in ns when links are enabled, and always those of the
// "kubernetes" Service in "default" (which rest.InClusterConfig reads), sorted.
// Services without a cluster IP are left out.
func serviceEnv(services []*corev1.Service, ns string, enableLinks bool) []envVar {
	chosen := map[string]*corev1.Service{}
	for _, svc := range services {
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		switch {
		case svc.Namespace == ns && enableLinks:
			chosen[svc.Name] = svc
		case svc.Namespace == "default" && svc.Name == "kubernetes":
			if _, ok := chosen[svc.Name]; !ok {
				chosen[svc.Name] = svc
			}
		}
	}
	names := make([]string, 0, len(chosen))
	for n := range chosen {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []envVar
	for _, n := range names {
		out = append(out, serviceVars(chosen[n])...)
	}
	return out
}

// serviceVars renders one Service's variables: NAME_SERVICE_HOST/PORT, a
// NAME_SERVICE_PORT_<PORT> per named port, and the Docker link variables.
func serviceVars(svc *corev1.Service) []envVar {
	prefix := envName(svc.Name)
	ip := svc.Spec.ClusterIP
	out := []envVar{{prefix + "_SERVICE_HOST", ip}}
	if len(svc.Spec.Ports) == 0 {
		return out
	}
	first := svc.Spec.Ports[0]
	out = append(out, envVar{prefix + "_SERVICE_PORT", strconv.Itoa(int(first.Port))})
	for _, p := range svc.Spec.Ports {
		if p.Name != "" {
			out = append(out, envVar{prefix + "_SERVICE_PORT_" + envName(p.Name), strconv.Itoa(int(p.Port))})
		}
	}
	hostPort := func(p corev1.ServicePort) string {
		return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(p.Port)).String()
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return out
	}
	out = append(out, envVar{prefix + "_PORT", strings.ToLower(string(protocol(first))) + "://" + hostPort(first)})
	for _, p := range svc.Spec.Ports {
		proto := string(protocol(p))
		v := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
		out = append(out,
			envVar{v, strings.ToLower(proto) + "://" + hostPort(p)},
			envVar{v + "_PROTO", strings.ToLower(proto)},
			envVar{v + "_PORT", strconv.Itoa(int(p.Port))},
			envVar{v + "_ADDR", ip},
		)
	}
	return out
}

func protocol(p corev1.ServicePort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

// resolvConf is a parsed or rendered resolv.conf.
type resolvConf struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// DNS limits the kubelet applies.
const (
	maxNameservers    = 3
	maxSearches       = 32
	maxSearchLineSize = 2048
)

// parseResolvConf reads the nameserver, search/domain and options lines of a
// resolv.conf.
func parseResolvConf(text string) resolvConf {
	var rc resolvConf
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				rc.Nameservers = append(rc.Nameservers, f[1])
			}
		case "search", "domain":
			rc.Searches = f[1:]
		case "options":
			rc.Options = append(rc.Options, f[1:]...)
		}
	}
	return rc
}

// dnsSettings are the node's DNS facts.
type dnsSettings struct {
	ClusterDNS    netip.Addr
	ClusterDomain string
	// Host is the node's own resolv.conf, for dnsPolicy Default.
	Host resolvConf
}

// podResolvConf computes a pod's resolv.conf from its dnsPolicy and dnsConfig, as
// the kubelet does: ClusterFirst (the default) uses the cluster DNS with the
// namespace's search path, and falls back to Default for hostNetwork pods (use
// ClusterFirstWithHostNet for those); Default copies the node's; None starts
// empty. dnsConfig's nameservers and searches are appended, its options replace
// options of the same name.
func podResolvConf(pod *corev1.Pod, d dnsSettings) (resolvConf, error) {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	switch policy {
	case corev1.DNSClusterFirst:
		if pod.Spec.HostNetwork {
			policy = corev1.DNSDefault
		}
	case corev1.DNSClusterFirstWithHostNet:
		policy = corev1.DNSClusterFirst
	case corev1.DNSDefault, corev1.DNSNone:
	default:
		return resolvConf{}, fmt.Errorf("unknown dnsPolicy %q: use ClusterFirst, ClusterFirstWithHostNet, Default or None", policy)
	}
	if policy == corev1.DNSClusterFirst && !d.ClusterDNS.IsValid() {
		policy = corev1.DNSDefault
	}
	var rc resolvConf
	switch policy {
	case corev1.DNSClusterFirst:
		dom := d.ClusterDomain
		rc.Nameservers = []string{d.ClusterDNS.String()}
		rc.Searches = append([]string{pod.Namespace + ".svc." + dom, "svc." + dom, dom}, d.Host.Searches...)
		rc.Options = []string{"ndots:5"}
	case corev1.DNSDefault:
		rc = resolvConf{
			Nameservers: append([]string(nil), d.Host.Nameservers...),
			Searches:    append([]string(nil), d.Host.Searches...),
			Options:     append([]string(nil), d.Host.Options...),
		}
	}
	if c := pod.Spec.DNSConfig; c != nil {
		rc.Nameservers = append(rc.Nameservers, c.Nameservers...)
		rc.Searches = append(rc.Searches, c.Searches...)
		for _, o := range c.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			rc.Options = mergeOption(rc.Options, o.Name, opt)
		}
	} else if policy == corev1.DNSNone {
		return resolvConf{}, fmt.Errorf("dnsPolicy None needs dnsConfig: add spec.dnsConfig.nameservers")
	}
	rc.Searches = dedupe(rc.Searches)
	if len(rc.Nameservers) > maxNameservers {
		rc.Nameservers = rc.Nameservers[:maxNameservers]
	}
	if len(rc.Searches) > maxSearches {
		rc.Searches = rc.Searches[:maxSearches]
	}
	for len(strings.Join(rc.Searches, " ")) > maxSearchLineSize {
		rc.Searches = rc.Searches[:len(rc.Searches)-1]
	}
	return rc, nil
}

func mergeOption(opts []string, name, opt string) []string {
	for i, o := range opts {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			opts[i] = opt
			return opts
		}
	}
	return append(opts, opt)
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// String renders the resolv.conf.
func (rc resolvConf) String() string {
	var b strings.Builder
	if len(rc.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(rc.Searches, " "))
	}
	for _, ns := range rc.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(rc.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(rc.Options, " "))
	}
	return b.String()
}

// hostsFile renders a pod's /etc/hosts as the kubelet does: localhost entries,
// the pod's own address and name (with its FQDN when hostname and subdomain are
// set), then spec.hostAliases.
func hostsFile(pod *corev1.Pod, ip netip.Addr, hostname, clusterDomain string) string {
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	if ip.IsValid() {
		if pod.Spec.Subdomain != "" && !pod.Spec.HostNetwork {
			fqdn := fmt.Sprintf("%s.%s.%s.svc.%s", hostname, pod.Spec.Subdomain, pod.Namespace, clusterDomain)
			fmt.Fprintf(&b, "%s\t%s\t%s\n", ip, fqdn, hostname)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.String()
}

// podHostname returns the pod's hostname: spec.hostname or the pod name, the node
// name for hostNetwork pods.
func podHostname(pod *corev1.Pod, nodeName string) string {
	switch {
	case pod.Spec.HostNetwork:
		return nodeName
	case pod.Spec.Hostname != "":
		return pod.Spec.Hostname
	}
	name := pod.Name
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-.")
	}
	return name
}

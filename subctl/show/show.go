// Package show implements `subctl show`: the clusterset as one joined cluster sees
// it, in the tables Submariner users know, or as JSON or YAML.
//
//	networks     CLUSTER ID, TYPE, POD CIDRS, SERVICE CIDRS, GLOBAL CIDR
//	endpoints    CLUSTER, ENDPOINT IP, PUBLIC IP, CABLE DRIVER, TYPE
//	connections  GATEWAY, CLUSTER, REMOTE IP, NAT, CABLE DRIVER, SUBNETS, STATUS, RTT avg.
//	gateways     NODE, HA STATUS, SUMMARY
//	versions     COMPONENT, REPOSITORY, CONFIGURED, RUNNING
//	globalnet    KIND, NAME, FOR, GLOBAL IPS, STATUS (the global IPs in use;
//	             part of all when the cluster runs Globalnet)
//
// Rows are sorted, so the output is the same for the same state.
package show

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/submariner-go/submariner/agents/globalnet"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/render"
)

// What names a table.
type What string

// The tables.
const (
	Networks    What = "networks"
	Endpoints   What = "endpoints"
	Connections What = "connections"
	Gateways    What = "gateways"
	Versions    What = "versions"
	Globalnet   What = "globalnet"
	All         What = "all"
)

// Whats lists the tables in the order `all` prints them; `all` adds Globalnet
// when the cluster runs Globalnet.
var Whats = []What{Networks, Endpoints, Connections, Gateways, Versions}

// Format is an output format.
type Format string

// The formats.
const (
	Table Format = "table"
	JSON  Format = "json"
	YAML  Format = "yaml"
)

// ParseFormat returns the format s names.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Table, JSON, YAML:
		return f, nil
	case "":
		return Table, nil
	}
	return "", fmt.Errorf("-o %q is not an output format: use table, json or yaml", s)
}

// NetworkRow is one cluster's address plan.
type NetworkRow struct {
	ClusterID    string   `json:"clusterID"`
	Type         string   `json:"type"`
	PodCIDRs     []string `json:"podCIDRs"`
	ServiceCIDRs []string `json:"serviceCIDRs"`
	GlobalCIDRs  []string `json:"globalCIDRs,omitempty"`
}

// EndpointRow is one cluster's gateway endpoint.
type EndpointRow struct {
	Cluster     string `json:"cluster"`
	EndpointIP  string `json:"endpointIP"`
	PublicIP    string `json:"publicIP,omitempty"`
	CableDriver string `json:"cableDriver"`
	Type        string `json:"type"`
}

// ConnectionRow is one tunnel of the active gateway.
type ConnectionRow struct {
	Gateway     string   `json:"gateway"`
	Cluster     string   `json:"cluster"`
	RemoteIP    string   `json:"remoteIP"`
	NAT         bool     `json:"nat"`
	CableDriver string   `json:"cableDriver"`
	Subnets     []string `json:"subnets"`
	Status      string   `json:"status"`
	RTTAverage  string   `json:"rttAverage,omitempty"`
}

// GatewayRow is one gateway node.
type GatewayRow struct {
	Node     string `json:"node"`
	HAStatus string `json:"haStatus"`
	Summary  string `json:"summary"`
}

// VersionRow is one component's image.
type VersionRow struct {
	Component  string `json:"component"`
	Repository string `json:"repository"`
	Configured string `json:"configured"`
	Running    string `json:"running"`
}

// GlobalIPRow is one Globalnet object and the global IPs allocated to it.
type GlobalIPRow struct {
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	For       string   `json:"for"`
	IPs       []string `json:"globalIPs"`
	Status    string   `json:"status,omitempty"`
	Message   string   `json:"message,omitempty"`
}

// Report holds the tables asked for.
type Report struct {
	Networks    []NetworkRow    `json:"networks,omitempty"`
	Endpoints   []EndpointRow   `json:"endpoints,omitempty"`
	Connections []ConnectionRow `json:"connections,omitempty"`
	Gateways    []GatewayRow    `json:"gateways,omitempty"`
	Versions    []VersionRow    `json:"versions,omitempty"`
	GlobalIPs   []GlobalIPRow   `json:"globalnet,omitempty"`

	what []What
}

// Collect reads the tables asked for from c.
func Collect(ctx context.Context, c *cluster.Cluster, what What) (*Report, error) {
	ns := submv1.ComponentNamespace
	if _, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("the cluster has no namespace %s: it has not joined a clusterset (subctl join)", ns)
	} else if err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	localID, globalnet := "", false
	if cm, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, manifests.ConfigMapName, metav1.GetOptions{}); err == nil {
		localID, globalnet = cm.Data["SUBMARINER_CLUSTERID"], cm.Data["SUBMARINER_GLOBALCIDR"] != ""
	}
	whats := []What{what}
	if what == All {
		whats = Whats
		if globalnet {
			whats = append(slices.Clone(Whats), Globalnet)
		}
	}
	r := &Report{what: whats}
	for _, w := range whats {
		var err error
		switch w {
		case Networks:
			r.Networks, err = networks(ctx, c, localID)
		case Endpoints:
			r.Endpoints, err = endpoints(ctx, c, localID)
		case Connections:
			r.Connections, err = connections(ctx, c)
		case Gateways:
			r.Gateways, err = gateways(ctx, c)
		case Versions:
			r.Versions, err = versions(ctx, c)
		case Globalnet:
			r.GlobalIPs, err = globalIPs(ctx, c)
		default:
			return nil, fmt.Errorf("cannot show %q: use one of networks, endpoints, connections, gateways, versions, globalnet, all", w)
		}
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// globalIPs lists the Globalnet allocations as the cluster records them.
func globalIPs(ctx context.Context, c *cluster.Cluster) ([]GlobalIPRow, error) {
	all, err := globalnet.ListAllocations(ctx, c.Client, submv1.ComponentNamespace)
	if err != nil {
		return nil, err
	}
	rows := make([]GlobalIPRow, 0, len(all))
	for _, a := range all {
		rows = append(rows, GlobalIPRow{Kind: a.Kind, Namespace: a.Namespace, Name: a.Name, For: a.For, IPs: nonNil(a.IPs),
			Status: a.Status, Message: a.Message})
	}
	return rows, nil
}

func kind(id, localID string) string {
	if id == localID {
		return "local"
	}
	return "remote"
}

func networks(ctx context.Context, c *cluster.Cluster, localID string) ([]NetworkRow, error) {
	var list submv1.ClusterList
	if err := c.Client.List(ctx, &list, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		return nil, fmt.Errorf("listing the Clusters: %w", err)
	}
	seen := map[string]bool{}
	var rows []NetworkRow
	for _, cl := range list.Items {
		id := cl.Spec.ClusterID
		if seen[id] {
			continue
		}
		seen[id] = true
		rows = append(rows, NetworkRow{ClusterID: id, Type: kind(id, localID), PodCIDRs: cl.Spec.ClusterCIDR,
			ServiceCIDRs: cl.Spec.ServiceCIDR, GlobalCIDRs: cl.Spec.GlobalCIDR})
	}
	sort.Slice(rows, func(i, j int) bool {
		if (rows[i].Type == "local") != (rows[j].Type == "local") {
			return rows[i].Type == "local"
		}
		return rows[i].ClusterID < rows[j].ClusterID
	})
	return rows, nil
}

func endpoints(ctx context.Context, c *cluster.Cluster, localID string) ([]EndpointRow, error) {
	var list submv1.EndpointList
	if err := c.Client.List(ctx, &list, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		return nil, fmt.Errorf("listing the Endpoints: %w", err)
	}
	var rows []EndpointRow
	for _, ep := range list.Items {
		rows = append(rows, EndpointRow{Cluster: ep.Spec.ClusterID, EndpointIP: ep.Spec.PrivateIP, PublicIP: ep.Spec.PublicIP,
			CableDriver: string(ep.Spec.Backend), Type: kind(ep.Spec.ClusterID, localID)})
	}
	sort.Slice(rows, func(i, j int) bool {
		if (rows[i].Type == "local") != (rows[j].Type == "local") {
			return rows[i].Type == "local"
		}
		if rows[i].Cluster != rows[j].Cluster {
			return rows[i].Cluster < rows[j].Cluster
		}
		return rows[i].EndpointIP < rows[j].EndpointIP
	})
	return rows, nil
}

func gatewayList(ctx context.Context, c *cluster.Cluster) ([]submv1.Gateway, error) {
	var list submv1.GatewayList
	if err := c.Client.List(ctx, &list, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		return nil, fmt.Errorf("listing the Gateways: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

func connections(ctx context.Context, c *cluster.Cluster) ([]ConnectionRow, error) {
	gws, err := gatewayList(ctx, c)
	if err != nil {
		return nil, err
	}
	var rows []ConnectionRow
	for _, gw := range gws {
		if gw.Status.HAStatus != submv1.HAStatusActive {
			continue
		}
		for _, conn := range gw.Status.Connections {
			ep := conn.Endpoint
			remote := conn.UsingIP
			if remote == "" {
				remote = ep.PrivateIP
				if ep.PublicIP != "" && ep.NATEnabled {
					remote = ep.PublicIP
				}
			}
			row := ConnectionRow{Gateway: ep.Hostname, Cluster: ep.ClusterID, RemoteIP: remote, NAT: conn.UsingNAT,
				CableDriver: string(ep.Backend), Subnets: ep.Subnets, Status: string(conn.Status)}
			if conn.LatencyRTT != nil {
				row.RTTAverage = conn.LatencyRTT.Average
			}
			rows = append(rows, row)
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Cluster != rows[j].Cluster {
			return rows[i].Cluster < rows[j].Cluster
		}
		return rows[i].Gateway < rows[j].Gateway
	})
	return rows, nil
}

func gateways(ctx context.Context, c *cluster.Cluster) ([]GatewayRow, error) {
	gws, err := gatewayList(ctx, c)
	if err != nil {
		return nil, err
	}
	var rows []GatewayRow
	for _, gw := range gws {
		rows = append(rows, GatewayRow{Node: gw.Name, HAStatus: string(gw.Status.HAStatus), Summary: Summary(gw.Status)})
	}
	return rows, nil
}

// Summary says in a few words how a gateway is doing, as Submariner's subctl does.
func Summary(st submv1.GatewayStatus) string {
	if st.StatusFailure != "" {
		return st.StatusFailure
	}
	if st.HAStatus != submv1.HAStatusActive {
		return "standing by for the active gateway to fail"
	}
	total := len(st.Connections)
	if total == 0 {
		return "there are no connections"
	}
	up := 0
	for _, c := range st.Connections {
		if c.Status == submv1.Connected {
			up++
		}
	}
	if up == total {
		return fmt.Sprintf("All connections (%d) are established", total)
	}
	return fmt.Sprintf("%d connections out of %d are established", up, total)
}

func versions(ctx context.Context, c *cluster.Cluster) ([]VersionRow, error) {
	ns := submv1.ComponentNamespace
	sel := metav1.ListOptions{LabelSelector: render.ManagedByLabel + "=" + render.ManagedByValue}
	type workload struct {
		name     string
		images   []string
		selector map[string]string
	}
	var ws []workload
	dss, err := c.Kube.AppsV1().DaemonSets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("listing the DaemonSets: %w", err)
	}
	for _, ds := range dss.Items {
		ws = append(ws, workload{ds.Name, images(ds.Spec.Template.Spec.Containers), ds.Spec.Selector.MatchLabels})
	}
	deps, err := c.Kube.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("listing the Deployments: %w", err)
	}
	for _, d := range deps.Items {
		ws = append(ws, workload{d.Name, images(d.Spec.Template.Spec.Containers), d.Spec.Selector.MatchLabels})
	}
	var rows []VersionRow
	for _, w := range ws {
		pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labelsString(w.selector)})
		if err != nil {
			return nil, fmt.Errorf("listing the pods of %s: %w", w.name, err)
		}
		running := map[string]bool{}
		for _, p := range pods.Items {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Running != nil {
					_, tag := splitImage(cs.Image)
					running[tag] = true
				}
			}
		}
		for _, img := range w.images {
			repo, tag := splitImage(img)
			rows = append(rows, VersionRow{Component: w.name, Repository: repo, Configured: tag, Running: keys(running)})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Component < rows[j].Component })
	return rows, nil
}

func images(cs []corev1.Container) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Image)
	}
	return out
}

func labelsString(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// splitImage splits an image reference into repository and tag (or digest).
func splitImage(ref string) (string, string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i], ref[i+1:]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		return ref[:i], ref[i+1:]
	}
	return ref, "latest"
}

func keys(m map[string]bool) string {
	if len(m) == 0 {
		return "-"
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// Write renders the report in format f.
func (r *Report) Write(w io.Writer, f Format) error {
	switch f {
	case JSON:
		b, err := json.MarshalIndent(r.sections(), "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case YAML:
		b, err := yaml.Marshal(r.sections())
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	for i, what := range r.what {
		if len(r.what) > 1 {
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "Showing %s\n", what)
		}
		if err := r.table(w, what); err != nil {
			return err
		}
	}
	return nil
}

// sections returns the tables asked for, each as a list (empty when it has no rows),
// keyed by their name.
func (r *Report) sections() map[string]any {
	out := map[string]any{}
	for _, w := range r.what {
		switch w {
		case Networks:
			out[string(w)] = nonNil(r.Networks)
		case Endpoints:
			out[string(w)] = nonNil(r.Endpoints)
		case Connections:
			out[string(w)] = nonNil(r.Connections)
		case Gateways:
			out[string(w)] = nonNil(r.Gateways)
		case Versions:
			out[string(w)] = nonNil(r.Versions)
		case Globalnet:
			out[string(w)] = nonNil(r.GlobalIPs)
		}
	}
	return out
}

func nonNil[T any](rows []T) []T {
	if rows == nil {
		return []T{}
	}
	return rows
}

func (r *Report) table(w io.Writer, what What) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	none := func(s string) { fmt.Fprintf(tw, "%s\n", s) }
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	switch what {
	case Networks:
		if len(r.Networks) == 0 {
			none("No clusters found")
			break
		}
		fmt.Fprintln(tw, "CLUSTER ID\tTYPE\tPOD CIDRS\tSERVICE CIDRS\tGLOBAL CIDR")
		for _, n := range r.Networks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ClusterID, n.Type, dash(strings.Join(n.PodCIDRs, ",")),
				dash(strings.Join(n.ServiceCIDRs, ",")), dash(strings.Join(n.GlobalCIDRs, ",")))
		}
	case Endpoints:
		if len(r.Endpoints) == 0 {
			none("No endpoints found")
			break
		}
		fmt.Fprintln(tw, "CLUSTER\tENDPOINT IP\tPUBLIC IP\tCABLE DRIVER\tTYPE")
		for _, e := range r.Endpoints {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Cluster, e.EndpointIP, dash(e.PublicIP), e.CableDriver, e.Type)
		}
	case Connections:
		if len(r.Connections) == 0 {
			none("No connections found")
			break
		}
		fmt.Fprintln(tw, "GATEWAY\tCLUSTER\tREMOTE IP\tNAT\tCABLE DRIVER\tSUBNETS\tSTATUS\tRTT avg.")
		for _, c := range r.Connections {
			nat := "no"
			if c.NAT {
				nat = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Gateway, c.Cluster, c.RemoteIP, nat, c.CableDriver,
				dash(strings.Join(c.Subnets, ", ")), c.Status, dash(c.RTTAverage))
		}
	case Gateways:
		if len(r.Gateways) == 0 {
			none("No gateways found")
			break
		}
		fmt.Fprintln(tw, "NODE\tHA STATUS\tSUMMARY")
		for _, g := range r.Gateways {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Node, dash(g.HAStatus), g.Summary)
		}
	case Versions:
		if len(r.Versions) == 0 {
			none("No components found")
			break
		}
		fmt.Fprintln(tw, "COMPONENT\tREPOSITORY\tCONFIGURED\tRUNNING")
		for _, v := range r.Versions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Component, v.Repository, v.Configured, v.Running)
		}
	case Globalnet:
		if len(r.GlobalIPs) == 0 {
			none("No global IPs in use")
			break
		}
		fmt.Fprintln(tw, "KIND\tNAME\tFOR\tGLOBAL IPS\tSTATUS")
		for _, g := range r.GlobalIPs {
			name := g.Name
			if g.Namespace != "" {
				name = g.Namespace + "/" + g.Name
			}
			status := dash(g.Status)
			if g.Status != "" && g.Status != submv1.ReasonSuccess && g.Message != "" {
				status += ": " + g.Message
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.Kind, name, g.For, dash(strings.Join(g.IPs, ",")), status)
		}
	}
	return tw.Flush()
}

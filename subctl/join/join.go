package join

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/syncer"
	"github.com/submariner-go/submariner/crds"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/subctl/apply"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/coredns"
	"github.com/submariner-go/submariner/subctl/discovery"
	"github.com/submariner-go/submariner/subctl/globalnet"
	"github.com/submariner-go/submariner/subctl/progress"
	"github.com/submariner-go/submariner/subctl/render"
)

// The inventory join keeps in the component namespace, and its keys besides the
// object list. uninstall reads them.
const (
	InventoryName = "submariner-subctl-inventory"
	// KeyClusterID is the cluster's ID.
	KeyClusterID = "clusterID"
	// KeyCoreDNS is the CoreDNS ConfigMap join edited (coredns.Target's String form).
	KeyCoreDNS = "corednsConfigMap"
	// KeyLabeledNodes lists, comma-separated, the nodes join labelled as gateways
	// (not those that were labelled already).
	KeyLabeledNodes = "labeledNodes"
)

// Inventory is where join records what it applied.
var Inventory = apply.Inventory{Namespace: submv1.ComponentNamespace, Name: InventoryName}

// IdentityName is the name of a cluster's ServiceAccount and RoleBinding on the broker.
func IdentityName(clusterID string) string { return manifests.ClusterIdentityName + clusterID }

// IdentityUser is the user name of a cluster's identity on the broker.
func IdentityUser(namespace, clusterID string) string {
	return "system:serviceaccount:" + namespace + ":" + IdentityName(clusterID)
}

// BrokerClusterName is the name of the cluster's Cluster on the broker: the name
// the gateway's syncer gives the local Cluster there, so that the syncer adopts
// what join published.
func BrokerClusterName(clusterID string) string {
	return syncer.DefaultBrokerName(clusterID, submv1.ComponentNamespace, clusterID)
}

var ownLabels = map[string]string{render.ManagedByLabel: render.ManagedByValue}

// Run joins the cluster chosen by o.Cluster.
func (o *Options) Run(ctx context.Context, rep *progress.Reporter) error {
	c, err := o.Cluster.Connect()
	if err != nil {
		return err
	}
	return Join(ctx, rep, c, o)
}

// joiner is one join in progress.
type joiner struct {
	o      *Options
	rep    *progress.Reporter
	c      *cluster.Cluster
	broker *cluster.Cluster // as the joiner identity

	gn           globalnet.Info
	useGlobalnet bool
	clusterCIDRs []netip.Prefix
	serviceCIDRs []netip.Prefix
	globalCIDR   netip.Prefix
	toLabel      []string
	oldInventory map[string]string
}

// Join joins c to the broker in o (Validate must have succeeded). It checks
// everything before it changes anything.
func Join(ctx context.Context, rep *progress.Reporter, c *cluster.Cluster, o *Options) error {
	j := &joiner{o: o, rep: rep, c: c}
	if err := j.check(ctx); err != nil {
		return err
	}
	return j.change(ctx)
}

// check does every read-only step: it reaches both API servers, discovers what is
// missing and validates the whole configuration against the broker's state.
func (j *joiner) check(ctx context.Context) error {
	o, rep := j.o, j.rep
	if err := rep.Run("Checking the cluster's API server at "+j.c.Config.Host, func(*progress.Step) error {
		if _, err := j.c.Kube.Discovery().ServerVersion(); err != nil {
			return fmt.Errorf("cannot reach the cluster's API server at %s: %w", j.c.Config.Host, err)
		}
		return nil
	}); err != nil {
		return err
	}
	inv, err := Inventory.Read(ctx, &apply.Applier{Dynamic: j.c.Dynamic, Mapper: j.c.Mapper})
	if err != nil {
		return err
	}
	j.oldInventory = inv
	if prev := inv[KeyClusterID]; prev != "" && prev != o.ClusterID {
		return fmt.Errorf("this cluster already joined as %s: run subctl uninstall first to join it as %s", prev, o.ClusterID)
	}
	url := o.brokerURL()
	if err := rep.Run("Checking the broker at "+url, func(*progress.Step) error {
		var err error
		j.broker, err = cluster.New(cluster.BrokerConfig(url, []byte(o.info.CA), o.info.JoinerToken))
		if err != nil {
			return err
		}
		user, err := whoAmI(ctx, j.broker)
		if err != nil {
			return brokerError(url, o.BrokerInfo, o.info.JoinerTokenExpires, err)
		}
		if want := "system:serviceaccount:" + o.info.BrokerNamespace + ":" + manifests.BrokerJoiner; user != want {
			return fmt.Errorf("the token in %s belongs to %s, not to the joiner %s: use the broker-info.subm that subctl deploy-broker wrote", o.BrokerInfo, user, want)
		}
		info, _, err := globalnet.Broker{Kube: j.broker.Kube, Namespace: o.info.BrokerNamespace}.Read(ctx)
		if err != nil {
			return err
		}
		j.gn = info
		j.useGlobalnet = info.Enabled && o.Globalnet
		return nil
	}); err != nil {
		return err
	}
	if o.globalCIDR.IsValid() && !j.gn.Enabled {
		return fmt.Errorf("--globalnet-cidr %s: the broker does not use Globalnet (deploy it with --globalnet to give clusters global CIDRs)", o.globalCIDR)
	}
	if err := j.discover(ctx); err != nil {
		return err
	}
	if err := rep.Run("Checking the CIDRs against the clusters already joined", func(*progress.Step) error {
		var list submv1.ClusterList
		if err := j.broker.Client.List(ctx, &list, client.InNamespace(o.info.BrokerNamespace)); err != nil {
			return fmt.Errorf("listing the clusters on the broker: %w", err)
		}
		if err := CheckOverlaps(o.ClusterID, j.clusterCIDRs, j.serviceCIDRs, j.useGlobalnet, list.Items); err != nil {
			return err
		}
		if j.useGlobalnet {
			// Refuse a --globalnet-cidr that overlaps another cluster's now, before
			// anything changes; the allocation itself re-checks under concurrency.
			if _, _, err := globalnet.Plan(j.gn, o.ClusterID, o.globalCIDR, o.GlobalnetClusterSize); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if len(o.LabelGateways) > 0 {
		if err := rep.Run("Checking the nodes to label as gateways", func(*progress.Step) error {
			for _, name := range o.LabelGateways {
				n, err := j.c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("--label-gateway %s: the cluster has no node %s (see kubectl get nodes)", name, name)
				}
				if err != nil {
					return fmt.Errorf("reading node %s: %w", name, err)
				}
				if n.Labels[submv1.GatewayLabel] != "true" && !contains(j.toLabel, name) {
					j.toLabel = append(j.toLabel, name)
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// discover fills in the CIDRs the user did not give.
func (j *joiner) discover(ctx context.Context) error {
	o := j.o
	j.clusterCIDRs, j.serviceCIDRs = o.clusterCIDRs, o.serviceCIDRs
	needCluster, needService := len(j.clusterCIDRs) == 0, len(j.serviceCIDRs) == 0
	if !needCluster && !needService {
		return nil
	}
	var res discovery.Result
	err := j.rep.Run("Discovering the cluster's network", func(*progress.Step) error {
		var err error
		res, err = discovery.Discoverer{Kube: j.c.Kube}.Discover(ctx, needCluster, needService)
		return err
	})
	for _, w := range res.Warnings {
		j.rep.Warn("%s", w)
	}
	if err != nil {
		return err
	}
	if needCluster {
		j.clusterCIDRs = res.Cluster.CIDRs
		j.rep.Info("Pod CIDRs %s, from %s", prefixes(res.Cluster.CIDRs), res.Cluster.Source)
	}
	if needService {
		j.serviceCIDRs = res.Service.CIDRs
		j.rep.Info("Service CIDRs %s, from %s", prefixes(res.Service.CIDRs), res.Service.Source)
	}
	return nil
}

// CheckOverlaps refuses CIDRs that overlap each other or, without Globalnet, the
// CIDRs of another cluster on the broker (its own earlier Cluster is ignored). The
// error names the other cluster and its CIDR.
func CheckOverlaps(clusterID string, clusterCIDRs, serviceCIDRs []netip.Prefix, useGlobalnet bool, others []submv1.Cluster) error {
	for _, c := range clusterCIDRs {
		for _, s := range serviceCIDRs {
			if c.Overlaps(s) {
				return fmt.Errorf("the Pod CIDR %s overlaps the Service CIDR %s of the same cluster: check --clustercidr and --servicecidr", c, s)
			}
		}
	}
	if useGlobalnet {
		return nil
	}
	type named struct {
		what string
		p    netip.Prefix
	}
	var own []named
	for _, p := range clusterCIDRs {
		own = append(own, named{"Pod CIDR", p})
	}
	for _, p := range serviceCIDRs {
		own = append(own, named{"Service CIDR", p})
	}
	sorted := append([]submv1.Cluster(nil), others...)
	sort.Slice(sorted, func(i, k int) bool { return sorted[i].Spec.ClusterID < sorted[k].Spec.ClusterID })
	for _, other := range sorted {
		if other.Spec.ClusterID == clusterID {
			continue
		}
		var theirs []named
		add := func(what string, ss []string) {
			for _, s := range ss {
				if p, err := netip.ParsePrefix(s); err == nil {
					theirs = append(theirs, named{what, p.Masked()})
				}
			}
		}
		if len(other.Spec.GlobalCIDR) > 0 {
			add("global CIDR", other.Spec.GlobalCIDR)
		} else {
			add("Pod CIDR", other.Spec.ClusterCIDR)
			add("Service CIDR", other.Spec.ServiceCIDR)
		}
		for _, a := range own {
			for _, b := range theirs {
				if a.p.Overlaps(b.p) {
					return fmt.Errorf("this cluster's %s %s overlaps the %s %s of cluster %s: without Globalnet the clusters' CIDRs must not overlap; give non-overlapping ranges, or deploy the broker with --globalnet",
						a.what, a.p, b.what, b.p, other.Spec.ClusterID)
				}
			}
		}
	}
	return nil
}

// change makes every change, in an order that keeps a half-finished join safe to
// re-run.
func (j *joiner) change(ctx context.Context) error {
	o, rep := j.o, j.rep
	ns := o.info.BrokerNamespace
	var token string
	if err := rep.Run("Creating the cluster's identity on the broker", func(*progress.Step) error {
		if err := j.createIdentity(ctx); err != nil {
			return err
		}
		var err error
		token, err = j.clusterToken(ctx)
		return err
	}); err != nil {
		return err
	}
	if j.useGlobalnet {
		if err := rep.Run("Allocating the cluster's global CIDR", func(*progress.Step) error {
			gn := globalnet.Broker{Kube: j.broker.Kube, Namespace: ns}
			p, err := gn.Allocate(ctx, o.ClusterID, o.globalCIDR, o.GlobalnetClusterSize, j.leftBroker)
			j.globalCIDR = p
			return err
		}); err != nil {
			return err
		}
		rep.Info("global CIDR %s", j.globalCIDR)
	} else if j.gn.Enabled && allocated(j.gn, o.ClusterID) {
		if err := rep.Run("Releasing the cluster's global CIDR (it opted out of Globalnet)", func(*progress.Step) error {
			return globalnet.Broker{Kube: j.broker.Kube, Namespace: ns}.Free(ctx, o.ClusterID)
		}); err != nil {
			return err
		}
	}
	if err := rep.Run("Waiting for the CRDs to be established", func(*progress.Step) error {
		return crds.Install(ctx, j.c.Config)
	}); err != nil {
		return err
	}
	if err := rep.Run("Installing the components", func(*progress.Step) error {
		objs, err := j.objects(token)
		if err != nil {
			return err
		}
		a := &apply.Applier{Dynamic: j.c.Dynamic, Mapper: j.c.Mapper}
		res, err := a.Sync(ctx, Inventory, objs, j.inventoryExtra(), ownLabels, render.ManagedByValue)
		for _, r := range res.Pruned {
			rep.Info("removed %s (no longer wanted)", r)
		}
		for _, r := range res.Kept {
			rep.Warn("left %s in place: it is no longer wanted but no longer labelled %s=%s", r, render.ManagedByLabel, render.ManagedByValue)
		}
		return err
	}); err != nil {
		return err
	}
	if len(j.toLabel) > 0 {
		if err := rep.Run("Labelling the gateway nodes "+strings.Join(j.toLabel, ", "), func(*progress.Step) error {
			return labelNodes(ctx, j.c, j.toLabel, "true")
		}); err != nil {
			return err
		}
	}
	if err := j.warnWithoutGateway(ctx); err != nil {
		return err
	}
	if err := j.patchCoreDNS(ctx); err != nil {
		return err
	}
	if err := rep.Run("Publishing the cluster on the broker", func(*progress.Step) error {
		return j.publish(ctx, token)
	}); err != nil {
		return err
	}
	rep.Info("cluster %s joined the clusterset; see its state with subctl show all", o.ClusterID)
	return nil
}

// createIdentity creates the cluster's ServiceAccount and RoleBinding on the broker
// as the joiner; existing ones are kept.
func (j *joiner) createIdentity(ctx context.Context) error {
	ns, id := j.o.info.BrokerNamespace, j.o.ClusterID
	name := IdentityName(id)
	labels := map[string]string{submv1.ClusterIDLabel: id, render.ManagedByLabel: render.ManagedByValue}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}
	if _, err := j.broker.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ServiceAccount %s/%s on the broker: %w", ns, name, err)
	}
	want := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: manifests.BrokerClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	api := j.broker.Kube.RbacV1().RoleBindings(ns)
	_, err := api.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading RoleBinding %s/%s on the broker: %w", ns, name, err)
		}
		if cur.RoleRef != want.RoleRef || len(cur.Subjects) != 1 || cur.Subjects[0] != want.Subjects[0] {
			return fmt.Errorf("RoleBinding %s/%s on the broker does not bind Role %s to ServiceAccount %s as join makes it: ask the broker's administrator to delete it, then join again",
				ns, name, manifests.BrokerClusterRole, name)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating RoleBinding %s/%s on the broker: %w", ns, name, err)
	}
	return nil
}

// clusterToken returns the cluster's broker token: the one already stored in the
// cluster when it is for this broker and identity, works, and has more than a third
// of TokenValidity left (so re-running join changes nothing); otherwise a new one.
func (j *joiner) clusterToken(ctx context.Context) (string, error) {
	o := j.o
	user := IdentityUser(o.info.BrokerNamespace, o.ClusterID)
	if !o.RotateToken {
		s, err := j.c.Kube.CoreV1().Secrets(submv1.ComponentNamespace).Get(ctx, component.BrokerSecretName, metav1.GetOptions{})
		if err == nil && string(s.Data[component.BrokerSecretServer]) == o.brokerURL() &&
			bytes.Equal(s.Data[component.BrokerSecretCA], []byte(o.info.CA)) {
			tok := string(s.Data[component.BrokerSecretToken])
			if sub, exp, ok := jwtClaims(tok); ok && sub == user && time.Until(exp) > o.TokenValidity/3 {
				bc, err := cluster.New(cluster.BrokerConfig(o.brokerURL(), []byte(o.info.CA), tok))
				if err == nil {
					if got, err := whoAmI(ctx, bc); err == nil && got == user {
						return tok, nil
					}
				}
			}
		}
	}
	secs := int64(o.TokenValidity / time.Second)
	tr, err := j.broker.Kube.CoreV1().ServiceAccounts(o.info.BrokerNamespace).CreateToken(ctx, IdentityName(o.ClusterID),
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting the cluster's broker token: %w", err)
	}
	if left := time.Until(tr.Status.ExpirationTimestamp.Time); left < o.TokenValidity-time.Hour {
		j.rep.Warn("the broker shortened the cluster's token validity to %v: re-run join before %s to renew it",
			left.Round(time.Hour), tr.Status.ExpirationTimestamp.UTC().Format(time.RFC3339))
	}
	return tr.Status.Token, nil
}

// jwtClaims reads (without verifying) the subject and expiry of a JWT.
func jwtClaims(tok string) (string, time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", time.Time{}, false
	}
	var claims struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return "", time.Time{}, false
	}
	return claims.Sub, time.Unix(claims.Exp, 0), true
}

// leftBroker reports whether a cluster has left the broker: its identity is gone.
// Its global CIDR is then free for others.
func (j *joiner) leftBroker(ctx context.Context, clusterID string) (bool, error) {
	_, err := j.broker.Kube.CoreV1().ServiceAccounts(j.o.info.BrokerNamespace).Get(ctx, IdentityName(clusterID), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking whether cluster %s is still joined: %w", clusterID, err)
	}
	return false, nil
}

// config is submariner-config: the components' environment.
func (j *joiner) config() map[string]string {
	o := j.o
	global := ""
	if j.globalCIDR.IsValid() {
		global = j.globalCIDR.String()
	}
	return map[string]string{
		"SUBMARINER_NAMESPACE":       submv1.ComponentNamespace,
		"SUBMARINER_CLUSTERID":       o.ClusterID,
		"SUBMARINER_CLUSTERCIDR":     prefixes(j.clusterCIDRs),
		"SUBMARINER_SERVICECIDR":     prefixes(j.serviceCIDRs),
		"SUBMARINER_GLOBALCIDR":      global,
		"SUBMARINER_CABLEDRIVER":     string(o.backend),
		"SUBMARINER_NATENABLED":      fmt.Sprint(o.NATT),
		"BROKER_K8S_REMOTENAMESPACE": o.info.BrokerNamespace,
		"BROKER_K8S_SECRET_DIR":      component.DefaultBrokerSecretDir,
	}
}

// objects returns everything join applies in the cluster.
func (j *joiner) objects(token string) ([]*unstructured.Unstructured, error) {
	o := j.o
	objs, err := render.Cluster(render.ClusterOptions{
		CableDriver: o.backend,
		Globalnet:   j.useGlobalnet,
		Images:      o.images,
		Config:      j.config(),
	})
	if err != nil {
		return nil, err
	}
	labels := map[string]string{render.ManagedByLabel: render.ManagedByValue, "app.kubernetes.io/part-of": "submariner"}
	typed := []runtime.Object{
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: component.BrokerSecretName, Namespace: submv1.ComponentNamespace, Labels: labels},
			Type:       corev1.SecretTypeOpaque,
			Data: map[string][]byte{
				component.BrokerSecretServer: []byte(o.brokerURL()),
				component.BrokerSecretCA:     []byte(o.info.CA),
				component.BrokerSecretToken:  []byte(token),
			},
		},
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: manifests.PSKSecretName, Namespace: submv1.ComponentNamespace, Labels: labels},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{manifests.PSKSecretKey: o.info.IPsecPSK},
		},
		j.clusterObject(submv1.ComponentNamespace, o.ClusterID, labels),
	}
	for _, t := range typed {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(t)
		if err != nil {
			return nil, err
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, nil
}

// clusterObject is the cluster's Cluster, named name in namespace.
func (j *joiner) clusterObject(namespace, name string, labels map[string]string) *submv1.Cluster {
	l := map[string]string{submv1.ClusterIDLabel: j.o.ClusterID}
	for k, v := range labels {
		l[k] = v
	}
	global := []string{}
	if j.globalCIDR.IsValid() {
		global = []string{j.globalCIDR.String()}
	}
	return &submv1.Cluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: submv1.SchemeGroupVersion.String(), Kind: "Cluster"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: l},
		Spec: submv1.ClusterSpec{
			ClusterID:   j.o.ClusterID,
			ClusterCIDR: strs(j.clusterCIDRs),
			ServiceCIDR: strs(j.serviceCIDRs),
			GlobalCIDR:  global,
		},
	}
}

func (j *joiner) inventoryExtra() map[string]string {
	labelled := map[string]bool{}
	for _, n := range strings.Split(j.oldInventory[KeyLabeledNodes], ",") {
		if n != "" {
			labelled[n] = true
		}
	}
	for _, n := range j.toLabel {
		labelled[n] = true
	}
	nodes := make([]string, 0, len(labelled))
	for n := range labelled {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	extra := map[string]string{
		KeyClusterID: j.o.ClusterID,
		KeyCoreDNS:   j.o.coredns.String(),
	}
	if len(nodes) > 0 {
		extra[KeyLabeledNodes] = strings.Join(nodes, ",")
	}
	return extra
}

func (j *joiner) warnWithoutGateway(ctx context.Context) error {
	nodes, err := j.c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: submv1.GatewayLabel + "=true"})
	if err != nil {
		return fmt.Errorf("listing the gateway nodes: %w", err)
	}
	if len(nodes.Items) == 0 {
		j.rep.Warn("no node is labelled %s=true, so no gateway runs yet: label one with --label-gateway NODE or kubectl label node NODE %s=true",
			submv1.GatewayLabel, submv1.GatewayLabel)
	}
	return nil
}

// patchCoreDNS makes the cluster's CoreDNS forward clusterset.local to the
// lighthouse CoreDNS Service; a ConfigMap edited by an earlier join with another
// target is restored.
func (j *joiner) patchCoreDNS(ctx context.Context) error {
	o := j.o
	if prev := j.oldInventory[KeyCoreDNS]; prev != "" && prev != o.coredns.String() {
		if t, err := coredns.ParseTarget(prev); err == nil {
			if err := j.rep.Run("Removing the clusterset.local forwarding from "+t.String(), func(*progress.Step) error {
				_, err := t.Remove(ctx, j.c.Kube, render.ManagedByValue)
				return err
			}); err != nil {
				return err
			}
		}
	}
	if !o.coredns.Custom {
		_, err := j.c.Kube.CoreV1().ConfigMaps(o.coredns.Namespace).Get(ctx, o.coredns.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			j.rep.Warn("the cluster has no CoreDNS ConfigMap %s, so clusterset.local names do not resolve through the cluster DNS: forward clusterset.local to the Service %s/%s yourself, or give --coredns-custom-configmap",
				o.coredns, submv1.ComponentNamespace, manifests.LighthouseCoreDNSService)
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the CoreDNS ConfigMap %s: %w", o.coredns, err)
		}
	}
	return j.rep.Run("Making CoreDNS ("+o.coredns.String()+") forward clusterset.local", func(*progress.Step) error {
		svc, err := j.c.Kube.CoreV1().Services(submv1.ComponentNamespace).Get(ctx, manifests.LighthouseCoreDNSService, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading the lighthouse CoreDNS Service: %w", err)
		}
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil {
			return fmt.Errorf("the lighthouse CoreDNS Service has no ClusterIP (%q)", svc.Spec.ClusterIP)
		}
		_, err = o.coredns.Apply(ctx, j.c.Kube, ip, ownLabels)
		return err
	})
}

// publish puts the cluster's Cluster on the broker with the cluster's own identity.
func (j *joiner) publish(ctx context.Context, token string) error {
	o := j.o
	bc, err := cluster.New(cluster.BrokerConfig(o.brokerURL(), []byte(o.info.CA), token))
	if err != nil {
		return err
	}
	obj := j.clusterObject(o.info.BrokerNamespace, BrokerClusterName(o.ClusterID),
		map[string]string{syncer.LabelOriginNamespace: submv1.ComponentNamespace})
	obj.Annotations = map[string]string{syncer.AnnotationOriginName: o.ClusterID}
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	force := true
	err = bc.Client.Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), &client.PatchOptions{FieldManager: apply.FieldManager, Force: &force})
	if err != nil {
		return fmt.Errorf("publishing Cluster %s/%s on the broker as %s: %w", obj.Namespace, obj.Name, IdentityUser(o.info.BrokerNamespace, o.ClusterID), err)
	}
	return nil
}

// labelNodes sets (value "true") or removes (value "") the gateway label.
func labelNodes(ctx context.Context, c *cluster.Cluster, nodes []string, value string) error {
	for _, name := range nodes {
		var patch []byte
		if value == "" {
			patch = []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, submv1.GatewayLabel))
		} else {
			patch = []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, submv1.GatewayLabel, value))
		}
		_, err := c.Kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil && !(value == "" && apierrors.IsNotFound(err)) {
			return fmt.Errorf("labelling node %s: %w", name, err)
		}
	}
	return nil
}

// UnlabelNodes removes the gateway label from nodes; missing nodes are skipped.
func UnlabelNodes(ctx context.Context, c *cluster.Cluster, nodes []string) error {
	return labelNodes(ctx, c, nodes, "")
}

// whoAmI returns the user the API server sees behind c's credentials.
func whoAmI(ctx context.Context, c *cluster.Cluster) (string, error) {
	r, err := c.Kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return r.Status.UserInfo.Username, nil
}

// brokerError explains a failed first contact with the broker.
func brokerError(url, file string, expires time.Time, err error) error {
	switch {
	case apierrors.IsUnauthorized(err):
		when := ""
		if !expires.IsZero() && time.Now().After(expires) {
			when = fmt.Sprintf(" (it expired at %s)", expires.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("the broker at %s refused the joiner token in %s%s: run subctl deploy-broker again for a fresh broker-info.subm", url, file, when)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the broker at %s does not let the joiner in: %w", url, err)
	}
	return fmt.Errorf("cannot reach the broker at %s: %w; check that this machine reaches it (or give --broker-url)", url, err)
}

func prefixes(ps []netip.Prefix) string { return strings.Join(strs(ps), ",") }

func strs(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func allocated(info globalnet.Info, clusterID string) bool {
	for _, a := range info.Clusters {
		if a.ClusterID == clusterID {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Package uninstall implements `subctl uninstall`: it removes what join installed,
// so that nothing of ours is left in the cluster, on its nodes or on the broker.
//
// The order matters. First every DaemonSet of ours (gateway, routeagent,
// globalnet) is switched into its cleanup mode (environment SUBMARINER_UNINSTALL=true:
// the component removes its kernel state from the node, then reports ready and
// idles) and uninstall waits until every node's cleanup pod is ready. Then the
// workloads are deleted and uninstall waits for their pods to go, so that nothing
// re-publishes the cluster on the broker. Then the cluster's objects and identity
// on the broker are deleted (with the cluster's own token), then the rest of what
// join applied, the CoreDNS forwarding, the gateway labels join added, the
// component namespace and, unless another part of the clusterset still needs them
// in this cluster, the CRDs.
package uninstall

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/crds"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/subctl/apply"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/coredns"
	"github.com/submariner-go/submariner/subctl/join"
	"github.com/submariner-go/submariner/subctl/progress"
	"github.com/submariner-go/submariner/subctl/render"
)

// CleanupFieldManager owns the cleanup-mode switch on the DaemonSets.
const CleanupFieldManager = "subctl-uninstall"

// pollInterval paces the waits for the cluster to catch up.
const pollInterval = 500 * time.Millisecond

// Options are uninstall's flags.
type Options struct {
	Cluster cluster.Options
}

// AddFlags registers the flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Cluster.AddFlags(fs, "the cluster's")
}

// Validate checks the flags.
func (o *Options) Validate() error { return o.Cluster.Validate() }

// Run uninstalls from the cluster o.Cluster chooses.
func (o *Options) Run(ctx context.Context, rep *progress.Reporter) error {
	c, err := o.Cluster.Connect()
	if err != nil {
		return err
	}
	return Uninstall(ctx, rep, c)
}

// state is what join left behind, read before anything is deleted.
type state struct {
	refs      []apply.Ref
	clusterID string
	coredns   coredns.Target
	editedDNS bool
	labelled  []string
	broker    *cluster.Cluster // nil without a broker Secret
	brokerNS  string
}

// Uninstall removes everything join installed in c and c's objects on the broker.
// When the broker cannot be reached, the cluster is still cleaned and the error
// says what is left on the broker.
func Uninstall(ctx context.Context, rep *progress.Reporter, c *cluster.Cluster) error {
	if err := rep.Run("Checking the cluster's API server at "+c.Config.Host, func(*progress.Step) error {
		if _, err := c.Kube.Discovery().ServerVersion(); err != nil {
			return fmt.Errorf("cannot reach the cluster's API server at %s: %w", c.Config.Host, err)
		}
		return nil
	}); err != nil {
		return err
	}
	st, err := readState(ctx, c)
	if err != nil {
		return err
	}
	if st == nil {
		rep.Info("nothing to uninstall: the cluster has no namespace %s and no inventory of a join", submv1.ComponentNamespace)
		return nil
	}
	a := &apply.Applier{Dynamic: c.Dynamic, Mapper: c.Mapper}

	if err := rep.Run("Waiting for the components to clean up the nodes", func(s *progress.Step) error {
		return cleanupMode(ctx, c, s)
	}); err != nil {
		return err
	}
	if err := rep.Run("Removing the components", func(s *progress.Step) error {
		return removeWorkloads(ctx, c, a, st, s)
	}); err != nil {
		return err
	}
	var brokerErr error
	if st.broker != nil {
		brokerErr = rep.Run("Removing cluster "+st.clusterID+" from the broker", func(*progress.Step) error {
			return leaveBroker(ctx, st)
		})
	}
	if err := rep.Run("Removing the rest of what join installed", func(*progress.Step) error {
		return removeRest(ctx, c, a, st)
	}); err != nil {
		return err
	}
	if err := rep.Run("Waiting for namespace "+submv1.ComponentNamespace+" to be deleted", func(s *progress.Step) error {
		return deleteNamespace(ctx, c, s)
	}); err != nil {
		return err
	}
	if err := removeCRDs(ctx, rep, c); err != nil {
		return err
	}
	if brokerErr != nil {
		return fmt.Errorf("the cluster is clean, but its objects on the broker are not removed: %w; run subctl uninstall again when the broker is reachable, or ask its administrator to delete the objects labelled %s=%s and the ServiceAccount and RoleBinding %s in %s",
			brokerErr, submv1.ClusterIDLabel, st.clusterID, join.IdentityName(st.clusterID), st.brokerNS)
	}
	rep.Info("cluster %s left the clusterset and nothing of ours is left in it", st.clusterID)
	return nil
}

// readState reads the inventory, the CoreDNS target, the labelled nodes and the
// broker credentials. It returns nil when the cluster shows no sign of a join.
func readState(ctx context.Context, c *cluster.Cluster) (*state, error) {
	a := &apply.Applier{Dynamic: c.Dynamic, Mapper: c.Mapper}
	inv, err := join.Inventory.Read(ctx, a)
	if err != nil {
		return nil, err
	}
	_, nsErr := c.Kube.CoreV1().Namespaces().Get(ctx, submv1.ComponentNamespace, metav1.GetOptions{})
	if inv == nil && apierrors.IsNotFound(nsErr) {
		return nil, nil
	}
	st := &state{coredns: coredns.DefaultTarget, editedDNS: true}
	if inv != nil {
		if st.refs, err = apply.Refs(inv); err != nil {
			return nil, err
		}
		st.clusterID = inv[join.KeyClusterID]
		if t := inv[join.KeyCoreDNS]; t != "" {
			if st.coredns, err = coredns.ParseTarget(t); err != nil {
				return nil, err
			}
		}
		for _, n := range strings.Split(inv[join.KeyLabeledNodes], ",") {
			if n != "" {
				st.labelled = append(st.labelled, n)
			}
		}
	}
	// The broker Secret reaches the broker as the cluster itself.
	s, err := c.Kube.CoreV1().Secrets(submv1.ComponentNamespace).Get(ctx, component.BrokerSecretName, metav1.GetOptions{})
	switch {
	case err == nil:
		st.broker, err = cluster.New(cluster.BrokerConfig(string(s.Data[component.BrokerSecretServer]),
			s.Data[component.BrokerSecretCA], string(s.Data[component.BrokerSecretToken])))
		if err != nil {
			return nil, err
		}
		st.brokerNS = submv1.BrokerNamespace
		if cm, err := c.Kube.CoreV1().ConfigMaps(submv1.ComponentNamespace).Get(ctx, manifests.ConfigMapName, metav1.GetOptions{}); err == nil {
			if ns := cm.Data["BROKER_K8S_REMOTENAMESPACE"]; ns != "" {
				st.brokerNS = ns
			}
			if st.clusterID == "" {
				st.clusterID = cm.Data["SUBMARINER_CLUSTERID"]
			}
		}
		if st.clusterID == "" {
			st.broker = nil // without the ID there is nothing we may remove there
		}
	case apierrors.IsNotFound(err):
	default:
		return nil, fmt.Errorf("reading the broker Secret: %w", err)
	}
	return st, nil
}

// cleanupWorkloads returns the workloads of ours that have a cleanup mode: every
// DaemonSet, and the lighthouse agent's Deployment (its state is on the broker).
func cleanupWorkloads(ctx context.Context, c *cluster.Cluster) ([]appsv1.DaemonSet, []appsv1.Deployment, error) {
	opts := metav1.ListOptions{LabelSelector: render.ManagedByLabel + "=" + render.ManagedByValue}
	dss, err := c.Kube.AppsV1().DaemonSets(submv1.ComponentNamespace).List(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the DaemonSets: %w", err)
	}
	sort.Slice(dss.Items, func(i, j int) bool { return dss.Items[i].Name < dss.Items[j].Name })
	deps, err := c.Kube.AppsV1().Deployments(submv1.ComponentNamespace).List(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the Deployments: %w", err)
	}
	var withCleanup []appsv1.Deployment
	for _, d := range deps.Items {
		if d.Name == manifests.LighthouseAgentDeployment {
			withCleanup = append(withCleanup, d)
		}
	}
	return dss.Items, withCleanup, nil
}

// cleanupMode switches every workload with a cleanup mode into it and waits until
// each has its ready cleanup pods (a DaemonSet on every node it runs on).
func cleanupMode(ctx context.Context, c *cluster.Cluster, s *progress.Step) error {
	dss, deps, err := cleanupWorkloads(ctx, c)
	if err != nil {
		return err
	}
	if len(dss)+len(deps) == 0 {
		return nil
	}
	for _, ds := range dss {
		if err := switchToCleanup(ctx, c, "DaemonSet", ds.Name, ds.Spec.Template.Spec.Containers); err != nil {
			return err
		}
	}
	for _, d := range deps {
		if err := switchToCleanup(ctx, c, "Deployment", d.Name, d.Spec.Template.Spec.Containers); err != nil {
			return err
		}
	}
	var last string
	err = wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		dss, deps, err := cleanupWorkloads(ctx, c)
		if err != nil {
			return false, err
		}
		done := true
		var parts []string
		for _, ds := range dss {
			done = done && CleanupDone(&ds)
			parts = append(parts, fmt.Sprintf("%s %d/%d nodes", ds.Name, min(ds.Status.NumberReady, ds.Status.UpdatedNumberScheduled), ds.Status.DesiredNumberScheduled))
		}
		for _, d := range deps {
			done = done && DeploymentCleanupDone(&d)
			parts = append(parts, fmt.Sprintf("%s %d/%d pods", d.Name, min(d.Status.ReadyReplicas, d.Status.UpdatedReplicas), ptr.Deref(d.Spec.Replicas, 1)))
		}
		last = strings.Join(parts, ", ")
		s.Update(last)
		return done, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the cleanup pods (%s): %w; the components' logs say what they could not remove (kubectl -n %s logs ds/NAME or deploy/NAME)",
			last, err, submv1.ComponentNamespace)
	}
	return nil
}

// switchToCleanup sets UninstallEnv=true on every container of the workload, as
// its own field manager, so the rest of the spec stays as join applied it.
func switchToCleanup(ctx context.Context, c *cluster.Cluster, kind, name string, ctrs []corev1.Container) error {
	var containers []any
	for _, ctr := range ctrs {
		containers = append(containers, map[string]any{
			"name": ctr.Name,
			"env":  []any{map[string]any{"name": manifests.UninstallEnv, "value": "true"}},
		})
	}
	patch := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1",
		"kind":       kind,
		"metadata":   map[string]any{"name": name, "namespace": submv1.ComponentNamespace},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": containers,
		}}},
	}}
	body, err := patch.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: CleanupFieldManager, Force: &force}
	if kind == "Deployment" {
		_, err = c.Kube.AppsV1().Deployments(submv1.ComponentNamespace).Patch(ctx, name, types.ApplyPatchType, body, opts)
	} else {
		_, err = c.Kube.AppsV1().DaemonSets(submv1.ComponentNamespace).Patch(ctx, name, types.ApplyPatchType, body, opts)
	}
	if err != nil {
		return fmt.Errorf("switching %s %s into cleanup mode: %w", kind, name, err)
	}
	return nil
}

// CleanupDone reports whether the DaemonSet controller has rolled ds out (the
// cleanup pods run on every node ds selects) and every pod is ready, which a
// component in cleanup mode signals once it has removed its state.
func CleanupDone(ds *appsv1.DaemonSet) bool {
	st := ds.Status
	return st.ObservedGeneration >= ds.Generation &&
		st.UpdatedNumberScheduled == st.DesiredNumberScheduled &&
		st.NumberReady == st.DesiredNumberScheduled &&
		st.NumberUnavailable == 0
}

// DeploymentCleanupDone is CleanupDone for a Deployment: rolled out (its
// strategy is Recreate, so the running component stopped before its cleanup
// pod started) and every pod ready.
func DeploymentCleanupDone(d *appsv1.Deployment) bool {
	st, want := d.Status, ptr.Deref(d.Spec.Replicas, 1)
	return st.ObservedGeneration >= d.Generation &&
		st.UpdatedReplicas == want && st.Replicas == want &&
		st.ReadyReplicas == want && st.UnavailableReplicas == 0
}

// workloadKinds are deleted first, and their pods waited for.
var workloadKinds = map[string]bool{"DaemonSet": true, "Deployment": true}

func removeWorkloads(ctx context.Context, c *cluster.Cluster, a *apply.Applier, st *state, s *progress.Step) error {
	refs := st.refs
	// Without an inventory, our workloads are found by label.
	if len(refs) == 0 {
		dss, _, err := cleanupWorkloads(ctx, c)
		if err != nil {
			return err
		}
		for _, ds := range dss {
			refs = append(refs, apply.Ref{APIVersion: "apps/v1", Kind: "DaemonSet", Namespace: ds.Namespace, Name: ds.Name})
		}
		deps, err := c.Kube.AppsV1().Deployments(submv1.ComponentNamespace).List(ctx,
			metav1.ListOptions{LabelSelector: render.ManagedByLabel + "=" + render.ManagedByValue})
		if err != nil {
			return fmt.Errorf("listing the Deployments: %w", err)
		}
		for _, d := range deps.Items {
			refs = append(refs, apply.Ref{APIVersion: "apps/v1", Kind: "Deployment", Namespace: d.Namespace, Name: d.Name})
		}
	}
	var selectors []string
	for _, r := range refs {
		if !workloadKinds[r.Kind] {
			continue
		}
		if _, err := a.Delete(ctx, r, ""); err != nil {
			return err
		}
		selectors = append(selectors, r.Name)
	}
	if len(selectors) == 0 {
		return nil
	}
	// The workloads' pods carry app=<workload name>.
	sel := "app in (" + strings.Join(selectors, ",") + ")"
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Kube.CoreV1().Pods(submv1.ComponentNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, fmt.Errorf("listing the components' pods: %w", err)
		}
		if n := len(pods.Items); n > 0 {
			s.Update(fmt.Sprintf("%d pods left", n))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the components' pods to end: %w", err)
	}
	return nil
}

// brokerKinds are the kinds a cluster owns on the broker, deleted by label.
var brokerKinds = []schema.GroupVersionKind{
	submv1.SchemeGroupVersion.WithKind("EndpointList"),
	submv1.SchemeGroupVersion.WithKind("ClusterList"),
	{Group: "multicluster.x-k8s.io", Version: "v1beta1", Kind: "ServiceImportList"},
	{Group: "discovery.k8s.io", Version: "v1", Kind: "EndpointSliceList"},
	{Group: "coordination.k8s.io", Version: "v1", Kind: "LeaseList"},
}

// leaveBroker deletes the cluster's objects on the broker and then its identity,
// all with the cluster's own token (the broker's admission policy lets a cluster
// delete exactly these).
func leaveBroker(ctx context.Context, st *state) error {
	b := st.broker
	for _, gvk := range brokerKinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk)
		err := b.Client.List(ctx, list, client.InNamespace(st.brokerNS), client.MatchingLabels{submv1.ClusterIDLabel: st.clusterID})
		if apierrors.IsUnauthorized(err) {
			// The identity is gone already: an earlier uninstall got this far.
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing %s of cluster %s on the broker: %w", strings.TrimSuffix(gvk.Kind, "List"), st.clusterID, err)
		}
		for i := range list.Items {
			obj := &list.Items[i]
			if err := b.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting %s %s/%s on the broker: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
			}
		}
	}
	name := join.IdentityName(st.clusterID)
	if err := b.Kube.RbacV1().RoleBindings(st.brokerNS).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting RoleBinding %s/%s on the broker: %w", st.brokerNS, name, err)
	}
	// The last request this token makes: deleting its ServiceAccount invalidates it.
	if err := b.Kube.CoreV1().ServiceAccounts(st.brokerNS).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting ServiceAccount %s/%s on the broker: %w", st.brokerNS, name, err)
	}
	return nil
}

// removeRest deletes what the inventory lists (besides namespaces, CRDs and the
// workloads, already gone), our cluster-scoped RBAC found by label, the CoreDNS
// forwarding and the gateway labels join added.
func removeRest(ctx context.Context, c *cluster.Cluster, a *apply.Applier, st *state) error {
	refs := append([]apply.Ref(nil), st.refs...)
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"},
	} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.Client.List(ctx, list, client.MatchingLabels{render.ManagedByLabel: render.ManagedByValue, "app.kubernetes.io/part-of": "submariner"}); err != nil {
			return fmt.Errorf("listing %ss: %w", gvk.Kind, err)
		}
		for _, item := range list.Items {
			refs = append(refs, apply.Ref{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: item.GetName()})
		}
	}
	apply.SortRefs(refs)
	seen := map[string]bool{}
	for i := len(refs) - 1; i >= 0; i-- {
		r := refs[i]
		if seen[r.String()] || r.Kind == "Namespace" || r.Kind == "CustomResourceDefinition" || workloadKinds[r.Kind] {
			continue
		}
		seen[r.String()] = true
		if _, err := a.Delete(ctx, r, render.ManagedByValue); err != nil {
			return err
		}
	}
	if _, err := a.Delete(ctx, apply.Ref{APIVersion: "v1", Kind: "ConfigMap", Namespace: join.Inventory.Namespace, Name: join.Inventory.Name}, ""); err != nil {
		return err
	}
	if st.editedDNS {
		if _, err := st.coredns.Remove(ctx, c.Kube, render.ManagedByValue); err != nil {
			return err
		}
	}
	return join.UnlabelNodes(ctx, c, st.labelled)
}

// deleteNamespace deletes the component namespace and waits until it is gone. What
// keeps it is named, so that a stuck namespace (Submariner's old pain) is explained.
func deleteNamespace(ctx context.Context, c *cluster.Cluster, s *progress.Step) error {
	api := c.Kube.CoreV1().Namespaces()
	err := api.Delete(ctx, submv1.ComponentNamespace, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", submv1.ComponentNamespace, err)
	}
	var why string
	err = wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		ns, err := api.Get(ctx, submv1.ComponentNamespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading namespace %s: %w", submv1.ComponentNamespace, err)
		}
		why = terminatingReason(ns)
		if why != "" {
			s.Update(why)
		}
		return false, nil
	})
	if err != nil {
		if why == "" {
			why = "the namespace controller has not removed it yet"
		}
		return fmt.Errorf("namespace %s is still terminating (%s): %w", submv1.ComponentNamespace, why, err)
	}
	return nil
}

func terminatingReason(ns *corev1.Namespace) string {
	var parts []string
	for _, cond := range ns.Status.Conditions {
		if cond.Status == corev1.ConditionTrue && cond.Message != "" {
			parts = append(parts, cond.Message)
		}
	}
	return strings.Join(parts, "; ")
}

// ourFieldManagers are the managers of CRDs we installed; the API server itself
// writes their status.
var ourFieldManagers = map[string]bool{crds.FieldManager: true, apply.FieldManager: true, "kube-apiserver": true}

// removeCRDs deletes our CRDs, unless this cluster also hosts the broker (which
// needs them), and the MCS CRDs when nobody but us manages them.
func removeCRDs(ctx context.Context, rep *progress.Reporter, c *cluster.Cluster) error {
	_, err := c.Kube.CoreV1().Namespaces().Get(ctx, submv1.BrokerNamespace, metav1.GetOptions{})
	if err == nil {
		rep.Info("kept the CRDs: this cluster also hosts the broker (namespace %s), which uses them", submv1.BrokerNamespace)
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("checking for a broker in this cluster: %w", err)
	}
	ext, err := apiextensionsclient.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	ours, err := crds.Submariner()
	if err != nil {
		return err
	}
	mcs, err := crds.MCS()
	if err != nil {
		return err
	}
	api := ext.ApiextensionsV1().CustomResourceDefinitions()
	return rep.Run("Removing the CRDs", func(s *progress.Step) error {
		var errs []error
		var deleted []string
		for _, crd := range ours {
			if err := api.Delete(ctx, crd.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("deleting CRD %s: %w", crd.Name, err))
			}
			deleted = append(deleted, crd.Name)
		}
		for _, crd := range mcs {
			cur, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("reading CRD %s: %w", crd.Name, err))
				continue
			}
			if other := foreignManager(cur); other != "" {
				rep.Info("kept CRD %s: %s manages it too", crd.Name, other)
				continue
			}
			if err := api.Delete(ctx, crd.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("deleting CRD %s: %w", crd.Name, err))
			}
			deleted = append(deleted, crd.Name)
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		// The API server removes a CRD after deleting all its objects.
		return wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
			var left []string
			for _, name := range deleted {
				_, err := api.Get(ctx, name, metav1.GetOptions{})
				if err == nil {
					left = append(left, name)
				} else if !apierrors.IsNotFound(err) {
					return false, fmt.Errorf("reading CRD %s: %w", name, err)
				}
			}
			if len(left) > 0 {
				s.Update("waiting for " + strings.Join(left, ", "))
			}
			return len(left) == 0, nil
		})
	})
}

// foreignManager returns a field manager of crd that is not ours, or "".
func foreignManager(crd *apiextensionsv1.CustomResourceDefinition) string {
	for _, mf := range crd.ManagedFields {
		if !ourFieldManagers[mf.Manager] {
			return mf.Manager
		}
	}
	return ""
}

package globalnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/globalnet/ipam"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// reconcileClusterEgress allocates the cluster's egress IPs to the
// ClusterGlobalEgressIP named cluster-egress.submariner.io (creating it when
// missing) and ignores others.
func (e *Engine) reconcileClusterEgress(ctx context.Context, name string) error {
	it := item{kind: kindClusterEgress, name: name}
	own := owner(kindClusterEgress, "", name)
	rec, ok := e.t.cluster.Get(types.NamespacedName{Name: name})
	e.mu.Lock()
	if !ok {
		e.release(own)
		e.unstarve(it)
		if name != submv1.ClusterGlobalEgressIPName {
			e.mu.Unlock()
			return nil
		}
		e.setClusterEgress(nil)
		e.mu.Unlock()
		return e.createDefaultClusterEgress(ctx)
	}
	obj := &submv1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if name != submv1.ClusterGlobalEgressIPName {
		e.release(own)
		e.mu.Unlock()
		return e.writeEgressStatus(ctx, obj, rec, nil, failure(submv1.ReasonInvalidInstance,
			"only the ClusterGlobalEgressIP named %s is used: set numGlobalIPs there and delete this one", submv1.ClusterGlobalEgressIPName))
	}
	ips, o := e.allocateEgress(it, own, rec)
	e.setClusterEgress(ips)
	e.mu.Unlock()
	return e.writeEgressStatus(ctx, obj, rec, ips, o)
}

func (e *Engine) createDefaultClusterEgress(ctx context.Context) error {
	obj := &submv1.ClusterGlobalEgressIP{
		ObjectMeta: metav1.ObjectMeta{Name: submv1.ClusterGlobalEgressIPName, Labels: managedLabels()},
		Spec:       submv1.ClusterGlobalEgressIPSpec{NumberOfIPs: ptr.To(e.cfg.ClusterEgressIPs)},
	}
	if err := e.kube.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the ClusterGlobalEgressIP %s: %w", obj.Name, err)
	}
	return nil
}

// setClusterEgress records the cluster's egress IPs. Callers hold e.mu.
func (e *Engine) setClusterEgress(ips []netip.Addr) {
	if !slices.Equal(e.clusterEgress, ips) {
		e.clusterEgress = ips
		e.rulesChanged()
	}
}

// allocateEgress gives an egress object its addresses and says how that went.
// Callers hold e.mu.
func (e *Engine) allocateEgress(it item, own string, rec egressRec) ([]netip.Addr, outcome) {
	if rec.NumberOfIPs == 0 {
		e.release(own)
		e.unstarve(it)
		return nil, failure(submv1.ReasonZeroInput, "the number of IPs is 0: no global IPs are allocated")
	}
	ips, err := e.allocate(it, own, rec.UID, rec.NumberOfIPs)
	switch {
	case errors.Is(err, ipam.ErrExhausted):
		return nil, failure(submv1.ReasonIPPoolAllocationFailed, "%v; the addresses are allocated as soon as others are released", err)
	case err != nil:
		return nil, failure(submv1.ReasonInvalidInput, "%v", err)
	}
	return ips, success("allocated %d global IPs: %s", len(ips), ipam.Range(ips))
}

// reconcileEgress allocates a GlobalEgressIP's addresses; the Pods it selects use
// them once their namespace is reconciled.
func (e *Engine) reconcileEgress(ctx context.Context, ns, name string) error {
	it := item{kind: kindEgress, ns: ns, name: name}
	own := owner(kindEgress, ns, name)
	defer e.add(kindNamespace, ns, "")
	rec, ok := e.t.egress.Get(types.NamespacedName{Namespace: ns, Name: name})
	e.mu.Lock()
	if !ok {
		e.release(own)
		e.unstarve(it)
		e.mu.Unlock()
		return nil
	}
	obj := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if rec.PodSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(rec.PodSelector); err != nil {
			e.release(own)
			e.unstarve(it)
			e.mu.Unlock()
			return e.writeEgressStatus(ctx, obj, rec, nil, failure(submv1.ReasonInvalidInput, "the pod selector is invalid: %v", err))
		}
	}
	ips, o := e.allocateEgress(it, own, rec)
	e.mu.Unlock()
	return e.writeEgressStatus(ctx, obj, rec, ips, o)
}

// reconcileNamespace decides the egress IPs of a namespace's Pods and headless
// endpoints (ResolveEgress).
func (e *Engine) reconcileNamespace(ns string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := NamespaceEgress{Namespace: ns}
	for _, g := range e.t.egress.List(ns) {
		own := owner(kindEgress, ns, g.Name)
		ips := e.pool.Owned(own)
		if len(ips) == 0 || e.uids[own] != g.Rec.UID {
			continue
		}
		s := EgressSelector{Name: g.Name, Created: g.Rec.Created, GlobalIPs: ips}
		if g.Rec.PodSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(g.Rec.PodSelector)
			if err != nil {
				continue
			}
			s.Selector = sel
		}
		in.Selectors = append(in.Selectors, s)
	}
	for _, h := range e.headless[ns] {
		in.Headless = append(in.Headless, h)
	}
	var out []Egress
	if len(in.Selectors) > 0 || len(in.Headless) > 0 {
		for _, p := range e.t.pods.List(ns) {
			if p.Rec.IP.IsValid() {
				in.Pods = append(in.Pods, PodAddr{Name: p.Name, IP: p.Rec.IP, Labels: labels.Set(p.Rec.Labels)})
			}
		}
		out = ResolveEgress(in)
	}
	old := e.egress[ns]
	if reflect.DeepEqual(old, out) {
		return
	}
	// Change only the rules that differ, so that only their shards are rewritten.
	keep := make(map[string]bool, len(out))
	for _, eg := range out {
		keep[egressKey(eg)] = true
	}
	for _, eg := range old {
		if !keep[egressKey(eg)] {
			e.rules.DeleteEgress(eg.Source, eg.Owner)
		}
	}
	for _, eg := range out {
		if n := e.rules.SetEgress(e.cfg.GlobalCIDR, eg); n != "" {
			e.log.Info("Ignoring input", "reason", n)
		}
	}
	if len(out) == 0 {
		delete(e.egress, ns)
	} else {
		e.egress[ns] = out
	}
	e.rulesChanged()
}

// egressKey identifies an egress rule: its source and owner.
func egressKey(eg Egress) string { return eg.Source.String() + " " + eg.Owner }

// reconcileExport makes the GlobalIngressIP of an exported ClusterIP Service exist
// exactly while the Service is exported and is a ClusterIP Service.
func (e *Engine) reconcileExport(ctx context.Context, ns, name string) error {
	key := types.NamespacedName{Namespace: ns, Name: name}
	export, exported := e.t.exports.Get(key)
	svc, hasSvc := e.t.services.Get(key)
	gkey := types.NamespacedName{Namespace: ns, Name: submv1.ServiceGlobalIngressIPName(name)}
	cur, has := e.t.ingress.Get(gkey)
	gobj := &submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: gkey.Name, Namespace: ns}}
	if !exported || !hasSvc || !svc.ClusterIP {
		if has && cur.Target == submv1.ClusterIPService {
			e.log.V(1).Info("Removing the global ingress IP of a Service that is no longer exported", "service", key.String())
			return e.deleteObject(ctx, gobj, cur.UID)
		}
		return nil
	}
	if has {
		if cur.Target != submv1.ClusterIPService {
			return e.deleteObject(ctx, gobj, cur.UID) // not one of ours: make room
		}
		return nil
	}
	gobj.Labels = managedLabels()
	gobj.Labels[submv1.LabelServiceRef] = name
	gobj.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: mcsv1beta1.SchemeGroupVersion.String(), Kind: "ServiceExport", Name: name, UID: export.UID,
	}}
	gobj.Spec = submv1.GlobalIngressIPSpec{Target: submv1.ClusterIPService, ServiceRef: &submv1.LocalRef{Name: name}}
	if err := e.kube.Create(ctx, gobj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating GlobalIngressIP %s: %w", gkey, err)
	}
	return nil
}

// wantedHeadless is a GlobalIngressIP a namespace's exported headless Services need.
type wantedHeadless struct {
	target  submv1.TargetType
	ip      netip.Addr
	pod     string
	service string // the first exported Service, by name, that it backs
}

// reconcileHeadless makes the namespace's headless GlobalIngressIPs match the
// endpoints of its exported headless Services: one per Pod (shared when a Pod backs
// several), one per address without a Pod.
func (e *Engine) reconcileHeadless(ctx context.Context, ns string) error {
	exported := map[string]bool{}
	for _, x := range e.t.exports.List(ns) {
		if svc, ok := e.t.services.Get(types.NamespacedName{Namespace: ns, Name: x.Name}); ok && svc.Headless {
			exported[x.Name] = true
		}
	}
	want := map[string]wantedHeadless{}
	for _, s := range e.t.slices.List(ns) {
		if !exported[s.Rec.Service] {
			continue
		}
		for _, ep := range s.Rec.Endpoints {
			w := wantedHeadless{target: submv1.HeadlessServiceEndpoints, ip: ep.IP, service: s.Rec.Service}
			name := submv1.EndpointsGlobalIngressIPName(ep.IP)
			if ep.Pod != "" {
				w.target, w.pod = submv1.HeadlessServicePod, ep.Pod
				name = submv1.PodGlobalIngressIPName(ep.Pod)
			}
			if have, ok := want[name]; ok {
				// Another slice or Service lists it: keep the lowest address and name.
				if have.ip.Less(w.ip) || have.ip == w.ip && have.service < w.service {
					continue
				}
			}
			want[name] = w
		}
	}

	var errs []error
	for _, g := range e.t.ingress.List(ns) {
		if g.Rec.Target == submv1.ClusterIPService {
			continue
		}
		obj := &submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: g.Name, Namespace: ns}}
		w, ok := want[g.Name]
		delete(want, g.Name)
		switch {
		case !ok || w.target != g.Rec.Target || w.pod != g.Rec.PodRef:
			e.log.V(1).Info("Removing the global ingress IP of a headless endpoint that is no longer exported", "globalIngressIP", ns+"/"+g.Name)
			errs = append(errs, e.deleteObject(ctx, obj, g.Rec.UID))
		case g.Rec.TargetIP != w.ip.String() || g.Rec.ServiceRef != w.service || g.Rec.ServiceLbl != w.service:
			errs = append(errs, e.patchHeadless(ctx, obj, g.Rec.UID, w))
		}
	}
	names := slices.Sorted(maps.Keys(want))
	for _, name := range names {
		w := want[name]
		obj := &submv1.GlobalIngressIP{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: managedLabels(),
				Annotations: map[string]string{ipAnnotation(w.target): w.ip.String()}},
			Spec: submv1.GlobalIngressIPSpec{Target: w.target, ServiceRef: &submv1.LocalRef{Name: w.service}},
		}
		obj.Labels[submv1.LabelServiceRef] = w.service
		if w.pod != "" {
			obj.Spec.PodRef = &submv1.LocalRef{Name: w.pod}
		}
		if err := e.kube.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("creating GlobalIngressIP %s/%s: %w", ns, name, err))
		}
	}
	return errors.Join(errs...)
}

func ipAnnotation(t submv1.TargetType) string {
	if t == submv1.HeadlessServicePod {
		return submv1.AnnotationHeadlessPodIP
	}
	return submv1.AnnotationHeadlessEndpointsIP
}

// patchHeadless points a headless GlobalIngressIP at w's address and Service.
func (e *Engine) patchHeadless(ctx context.Context, obj *submv1.GlobalIngressIP, uid types.UID, w wantedHeadless) error {
	data, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"uid":         uid,
			"labels":      map[string]string{submv1.LabelServiceRef: w.service},
			"annotations": map[string]string{ipAnnotation(w.target): w.ip.String()},
		},
		"spec": map[string]any{"serviceRef": map[string]string{"name": w.service}},
	})
	if err != nil {
		return err
	}
	err = e.kube.Patch(ctx, obj, client.RawPatch(types.MergePatchType, data))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating GlobalIngressIP %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	return nil
}

// reconcileIngress allocates a GlobalIngressIP's address and puts it to use: an
// internal Service for a ClusterIP Service, a DNAT and SNAT rule for a headless Pod
// or endpoint. When the GlobalIngressIP is gone, all of that goes, and the address.
func (e *Engine) reconcileIngress(ctx context.Context, ns, name string) error {
	key := types.NamespacedName{Namespace: ns, Name: name}
	it := item{kind: kindIngress, ns: ns, name: name}
	own := owner(kindIngress, ns, name)
	rec, ok := e.t.ingress.Get(key)
	e.mu.Lock()
	if !ok {
		e.release(own)
		e.unstarve(it)
		e.setHeadless(ns, name, HeadlessAddr{}, netip.Addr{})
		e.mu.Unlock()
		return e.deleteInternalService(ctx, ns, name)
	}
	var svc serviceRec
	if rec.Target == submv1.ClusterIPService {
		// Globalnet owns these: one that no export wants (left over, or made by
		// hand) goes; its deletion releases the address.
		var hasSvc bool
		svc, hasSvc = e.t.services.Get(types.NamespacedName{Namespace: ns, Name: rec.ServiceRef})
		_, exported := e.t.exports.Get(types.NamespacedName{Namespace: ns, Name: rec.ServiceRef})
		if !exported || !hasSvc || !svc.ClusterIP || name != submv1.ServiceGlobalIngressIPName(rec.ServiceRef) {
			e.mu.Unlock()
			e.log.V(1).Info("Removing a GlobalIngressIP no export needs", "globalIngressIP", key.String())
			return errors.Join(e.deleteInternalService(ctx, ns, name),
				e.deleteObject(ctx, &submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}, rec.UID))
		}
	}
	ips, err := e.allocate(it, own, rec.UID, 1)
	if err != nil {
		e.setHeadless(ns, name, HeadlessAddr{}, netip.Addr{})
		e.mu.Unlock()
		o := failure(submv1.ReasonInvalidInput, "%v", err)
		if errors.Is(err, ipam.ErrExhausted) {
			o = failure(submv1.ReasonIPPoolAllocationFailed, "%v; the address is allocated as soon as another is released", err)
		}
		return e.writeIngressStatus(ctx, key, rec, netip.Addr{}, o)
	}
	ip := ips[0]
	var o outcome
	var ierr error
	if rec.Target == submv1.ClusterIPService {
		e.mu.Unlock()
	}
	switch rec.Target {
	case submv1.ClusterIPService:
		if ierr = e.ensureInternalService(ctx, ns, name, rec, svc, ip); ierr != nil {
			o = failure(submv1.ReasonInternalServiceCreationFailed, "%v", ierr)
		} else {
			o = success("the Service is reachable at %s", ip)
		}
	default:
		target, err := netip.ParseAddr(rec.TargetIP)
		if err != nil || !target.Is4() {
			e.setHeadless(ns, name, HeadlessAddr{}, netip.Addr{})
			o = failure(submv1.ReasonInvalidInput, "the annotation %s is %q, not the IPv4 address of the target", ipAnnotation(rec.Target), rec.TargetIP)
		} else {
			e.setHeadless(ns, name, HeadlessAddr{Name: name, IP: target, GlobalIP: ip, Pod: rec.Target == submv1.HeadlessServicePod}, ip)
			o = success("%s is reachable at %s", target, ip)
		}
		e.mu.Unlock()
	}
	if err := e.writeIngressStatus(ctx, key, rec, ip, o); err != nil {
		return errors.Join(ierr, err)
	}
	return ierr
}

// setHeadless records (or, with an invalid h.IP, forgets) a headless address's
// global IP for the rules and for its namespace's egress. Callers hold e.mu.
func (e *Engine) setHeadless(ns, name string, h HeadlessAddr, ip netip.Addr) {
	own := owner(kindIngress, ns, name)
	m := e.headless[ns]
	if !h.IP.IsValid() {
		if _, ok := m[name]; !ok {
			return
		}
		delete(m, name)
		if len(m) == 0 {
			delete(e.headless, ns)
		}
		if old, ok := e.ingress[own]; ok {
			e.rules.DeleteIngress(old.GlobalIP, own)
			delete(e.ingress, own)
		}
	} else {
		if m[name] == h {
			return
		}
		if m == nil {
			m = map[string]HeadlessAddr{}
			e.headless[ns] = m
		}
		m[name] = h
		if old, ok := e.ingress[own]; ok && old.GlobalIP != ip {
			e.rules.DeleteIngress(old.GlobalIP, own)
		}
		r := Ingress{GlobalIP: ip, Target: h.IP, Owner: own}
		e.ingress[own] = r
		if n := e.rules.SetIngress(e.cfg.GlobalCIDR, r); n != "" {
			e.log.Info("Ignoring input", "reason", n)
		}
	}
	e.add(kindNamespace, ns, "")
	e.rulesChanged()
}

// ensureInternalService makes the internal Service of an exported ClusterIP Service
// match it, with the global IP as its external IP, so that kube-proxy translates
// the global IP like the Service's cluster IP (from remote clusters and locally).
func (e *Engine) ensureInternalService(ctx context.Context, ns, name string, g ingressRec, svc serviceRec, ip netip.Addr) error {
	iname := submv1.InternalServiceName(name)
	have, ok := e.t.internal.Get(types.NamespacedName{Namespace: ns, Name: iname})
	if ok && have.ExportedRef == name && have.ExternalIP == ip.String() && have.SpecHash == svc.SpecHash {
		return nil
	}
	var want serviceSpec
	if err := json.Unmarshal([]byte(svc.Spec), &want); err != nil {
		return fmt.Errorf("decoding the spec of Service %s/%s: %w", ns, name, err)
	}
	labels := managedLabels()
	labels[submv1.LabelExportedServiceRef] = name
	spec := corev1ac.ServiceSpec().
		WithType(corev1.ServiceTypeClusterIP).
		WithExternalIPs(ip.String()).
		WithIPFamilyPolicy(corev1.IPFamilyPolicySingleStack).
		WithIPFamilies(corev1.IPv4Protocol)
	if len(want.Selector) > 0 {
		spec.WithSelector(want.Selector)
	}
	for _, p := range want.Ports {
		pc := corev1ac.ServicePort().WithName(p.Name).WithProtocol(p.Protocol).WithPort(p.Port).WithTargetPort(p.TargetPort)
		if p.AppProtocol != nil {
			pc.WithAppProtocol(*p.AppProtocol)
		}
		spec.WithPorts(pc)
	}
	if want.SessionAffinity != "" {
		spec.WithSessionAffinity(want.SessionAffinity)
	}
	if c := want.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		spec.WithSessionAffinityConfig(corev1ac.SessionAffinityConfig().
			WithClientIP(corev1ac.ClientIPConfig().WithTimeoutSeconds(*c.ClientIP.TimeoutSeconds)))
	}
	ac := corev1ac.Service(iname, ns).WithLabels(labels).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(submv1.SchemeGroupVersion.String()).WithKind("GlobalIngressIP").
			WithName(name).WithUID(g.UID).WithController(true)).
		WithSpec(spec)
	if _, err := e.core.CoreV1().Services(ns).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("writing the internal Service %s/%s with external IP %s: %w", ns, iname, ip, err)
	}
	return nil
}

// deleteInternalService removes the internal Service of the exported Service name.
func (e *Engine) deleteInternalService(ctx context.Context, ns, name string) error {
	iname := submv1.InternalServiceName(name)
	have, ok := e.t.internal.Get(types.NamespacedName{Namespace: ns, Name: iname})
	if !ok || have.ExportedRef != name {
		return nil
	}
	return e.deleteObject(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: iname, Namespace: ns}}, have.UID)
}

// reconcileInternal deletes an internal Service whose GlobalIngressIP is gone (left
// over while Globalnet was not running).
func (e *Engine) reconcileInternal(ctx context.Context, ns, iname string) error {
	have, ok := e.t.internal.Get(types.NamespacedName{Namespace: ns, Name: iname})
	if !ok {
		return nil
	}
	g, ok := e.t.ingress.Get(types.NamespacedName{Namespace: ns, Name: have.ExportedRef})
	if ok && g.Target == submv1.ClusterIPService && submv1.InternalServiceName(have.ExportedRef) == iname {
		return nil
	}
	e.log.V(1).Info("Removing an orphaned internal Service", "service", ns+"/"+iname)
	return e.deleteObject(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: iname, Namespace: ns}}, have.UID)
}

func managedLabels() map[string]string {
	return map[string]string{submv1.LabelManagedBy: submv1.GlobalnetManagedBy}
}

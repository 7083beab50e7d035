package nodeagent

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// objKind is the kind of object a pod refers to.
type objKind string

const (
	kindConfigMap objKind = "ConfigMap"
	kindSecret    objKind = "Secret"
)

// objKey names one ConfigMap or Secret.
type objKey struct {
	Kind      objKind
	Namespace string
	Name      string
}

// objectWatches keeps one watch per ConfigMap or Secret that a pod on the node
// refers to (as the kubelet's watch-based manager does: the Node authorizer lets a
// node watch exactly those, by name) and tells the pods that use an object when it
// changes.
type objectWatches struct {
	ctx      context.Context
	kube     kubernetes.Interface
	onChange func(types.UID)

	mu      sync.Mutex
	watches map[objKey]*objWatch
}

type objWatch struct {
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	users    map[types.UID]bool
}

func newObjectWatches(ctx context.Context, kube kubernetes.Interface, onChange func(types.UID)) *objectWatches {
	return &objectWatches{ctx: ctx, kube: kube, onChange: onChange, watches: map[objKey]*objWatch{}}
}

// use makes the pod a user of exactly keys, starting and stopping watches.
func (o *objectWatches) use(uid types.UID, keys []objKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	want := map[objKey]bool{}
	for _, k := range keys {
		want[k] = true
		w, ok := o.watches[k]
		if !ok {
			w = o.start(k)
			o.watches[k] = w
		}
		w.users[uid] = true
	}
	for k, w := range o.watches {
		if want[k] || !w.users[uid] {
			continue
		}
		delete(w.users, uid)
		if len(w.users) == 0 {
			w.cancel()
			delete(o.watches, k)
		}
	}
}

// forget drops the pod from every watch.
func (o *objectWatches) forget(uid types.UID) { o.use(uid, nil) }

func (o *objectWatches) start(k objKey) *objWatch {
	ctx, cancel := context.WithCancel(o.ctx)
	sel := fields.OneTermEqualSelector("metadata.name", k.Name).String()
	var lw *cache.ListWatch
	var obj runtime.Object
	switch k.Kind {
	case kindConfigMap:
		obj = &corev1.ConfigMap{}
		lw = &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				opts.FieldSelector = sel
				return o.kube.CoreV1().ConfigMaps(k.Namespace).List(ctx, opts)
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				opts.FieldSelector = sel
				return o.kube.CoreV1().ConfigMaps(k.Namespace).Watch(ctx, opts)
			},
		}
	default:
		obj = &corev1.Secret{}
		lw = &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				opts.FieldSelector = sel
				return o.kube.CoreV1().Secrets(k.Namespace).List(ctx, opts)
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				opts.FieldSelector = sel
				return o.kube.CoreV1().Secrets(k.Namespace).Watch(ctx, opts)
			},
		}
	}
	inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{})
	w := &objWatch{informer: inf, cancel: cancel, users: map[types.UID]bool{}}
	notify := func() {
		o.mu.Lock()
		var users []types.UID
		for u := range w.users {
			users = append(users, u)
		}
		o.mu.Unlock()
		for _, u := range users {
			o.onChange(u)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	})
	go inf.RunWithContext(ctx)
	return w
}

// get returns the object from its watch, waiting up to a few seconds for the
// watch to sync, and reads it directly when the watch cannot sync (a new pod's
// relation to the object may not have reached the Node authorizer yet).
func (o *objectWatches) get(ctx context.Context, k objKey) (runtime.Object, error) {
	o.mu.Lock()
	w, ok := o.watches[k]
	o.mu.Unlock()
	if ok {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		synced := cache.WaitForCacheSync(sctx.Done(), w.informer.HasSynced)
		cancel()
		if synced {
			item, exists, err := w.informer.GetStore().GetByKey(k.Namespace + "/" + k.Name)
			if err != nil {
				return nil, err
			}
			if !exists {
				return nil, apierrors.NewNotFound(corev1.Resource(resourceOf(k.Kind)), k.Name)
			}
			return item.(runtime.Object), nil
		}
	}
	if k.Kind == kindConfigMap {
		return o.kube.CoreV1().ConfigMaps(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
	}
	return o.kube.CoreV1().Secrets(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
}

func resourceOf(k objKind) string {
	if k == kindConfigMap {
		return "configmaps"
	}
	return "secrets"
}

// podObjects returns the ConfigMaps and Secrets the pod refers to, in env,
// envFrom and volumes.
func podObjects(pod *corev1.Pod) []objKey {
	seen := map[objKey]bool{}
	var out []objKey
	add := func(kind objKind, name string) {
		k := objKey{kind, pod.Namespace, name}
		if name != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil {
					add(kindConfigMap, e.ConfigMapRef.Name)
				}
				if e.SecretRef != nil {
					add(kindSecret, e.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					add(kindConfigMap, e.ValueFrom.ConfigMapKeyRef.Name)
				}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					add(kindSecret, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil {
			add(kindConfigMap, v.ConfigMap.Name)
		}
		if v.Secret != nil {
			add(kindSecret, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add(kindConfigMap, s.ConfigMap.Name)
				}
				if s.Secret != nil {
					add(kindSecret, s.Secret.Name)
				}
			}
		}
	}
	return out
}

// podObjectSource reads a pod's objects through the watches.
type podObjectSource struct {
	ctx context.Context
	o   *objectWatches
}

func (s podObjectSource) ConfigMap(ns, name string) (*corev1.ConfigMap, error) {
	obj, err := s.o.get(s.ctx, objKey{kindConfigMap, ns, name})
	if err != nil {
		return nil, err
	}
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return nil, fmt.Errorf("unexpected %T for configMap %s", obj, name)
	}
	return cm, nil
}

func (s podObjectSource) Secret(ns, name string) (*corev1.Secret, error) {
	obj, err := s.o.get(s.ctx, objKey{kindSecret, ns, name})
	if err != nil {
		return nil, err
	}
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return nil, fmt.Errorf("unexpected %T for secret %s", obj, name)
	}
	return sec, nil
}

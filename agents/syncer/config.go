package syncer

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Object is what a syncer syncs: a pointer to a Kubernetes API type such as
// *submv1.Endpoint or *discoveryv1.EndpointSlice, or *unstructured.Unstructured
// together with Config.GVK.
type Object interface {
	metav1.Object
	runtime.Object
}

// AllNamespaces, as ToBroker.Namespace, syncs sources from every namespace.
const AllNamespaces = "*"

// Defaults of the optional Config fields.
const (
	DefaultResyncPeriod = 10 * time.Minute
	DefaultWorkers      = 2
)

// Config configures one syncer: one object type, both directions between the local
// cluster and the broker.
type Config[T Object] struct {
	// Name tells syncers apart in logs and metrics (label "type"); default the kind.
	Name string
	// ClusterID is this cluster's ID. Objects it pushes carry it in
	// submv1.ClusterIDLabel; broker objects carrying it are never copied back down.
	ClusterID string
	// Local reaches the local cluster; Broker reaches the broker.
	Local, Broker *rest.Config
	// BrokerNamespace holds the objects on the broker; default
	// submv1.BrokerNamespace.
	BrokerNamespace string
	// Scheme maps T to its group, version and kind; default Scheme().
	Scheme *runtime.Scheme
	// GVK is the kind to sync when T is *unstructured.Unstructured; it must be empty
	// otherwise.
	GVK schema.GroupVersionKind
	// SyncStatus copies the status along with the object, through the status
	// subresource where the type has one. Without it the status is neither copied
	// nor compared.
	SyncStatus bool
	// ToBroker configures the local -> broker direction.
	ToBroker ToBroker[T]
	// FromBroker configures the broker -> local direction.
	FromBroker FromBroker[T]
	// ResyncPeriod re-checks every object this often, repairing any drift that
	// no event announced; default DefaultResyncPeriod.
	ResyncPeriod time.Duration
	// Workers is the number of objects synced in parallel; default DefaultWorkers.
	Workers int
	// Backoff paces the retries of failed syncs; zero fields take DefaultBackoff's.
	Backoff Backoff
	// Log receives the syncer's logs; default logr.Discard().
	Log logr.Logger
	// Metrics receives the syncer's metrics; default a private, unregistered set.
	Metrics *Metrics
}

// ToBroker configures the push of local objects to the broker.
type ToBroker[T Object] struct {
	// Disabled turns the direction off.
	Disabled bool
	// Namespace holds the local objects to push; default submv1.ComponentNamespace,
	// AllNamespaces for every namespace. Local copies of broker objects are never
	// pushed.
	Namespace string
	// LabelSelector, when set, limits the local objects the syncer watches and
	// caches at all (for instance to lighthouse's own EndpointSlices), which saves
	// memory where Filter would look at everything.
	LabelSelector string
	// Filter says which local objects go up; default all.
	Filter func(T) bool
	// Transform edits the broker object before it is written, for instance to drop
	// a bookkeeping annotation. It gets a copy it may change in place. Its name and
	// namespace are ignored: the broker name comes from Name, the namespace is the
	// broker namespace. An error means the object cannot be synced as it is; it is
	// reported and the object is left alone until it changes.
	Transform func(T) error
	// Name names the objects on the broker; default DefaultBrokerName.
	Name BrokerNameFunc
}

// FromBroker configures the copy of other clusters' broker objects into the local
// cluster.
type FromBroker[T Object] struct {
	// Disabled turns the direction off.
	Disabled bool
	// Into is the one namespace every copy goes to; default
	// submv1.ComponentNamespace. The syncer then watches only that namespace.
	Into string
	// Namespace, when set, chooses the namespace of each copy instead of Into
	// (the syncer then watches copies and namespaces cluster-wide).
	// NamespaceFromLabel builds the common case. An error means the object cannot
	// be copied as it is.
	Namespace func(T) (string, error)
	// Filter says which broker objects come down; default all. Objects of this
	// cluster never come down, whatever the filter says.
	Filter func(T) bool
	// Transform edits the local copy before it is written. It gets a copy named as
	// the broker object, already in its target namespace, and may change anything,
	// including the name and namespace. The syncer's labels and annotations and the
	// origin cluster label are set after it.
	Transform func(T) error
}

// NamespaceFromLabel returns a FromBroker.Namespace that puts each copy into the
// namespace named by the object's label key, for instance
// submv1.LabelSourceNamespace on lighthouse EndpointSlices.
func NamespaceFromLabel[T Object](key string) func(T) (string, error) {
	return func(obj T) (string, error) {
		ns, ok := obj.GetLabels()[key]
		if !ok {
			return "", fmt.Errorf("no label %s to name the namespace of the copy: the object's producer must set it", key)
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return "", fmt.Errorf("label %s=%q does not name a namespace: %s", key, ns, strings.Join(errs, "; "))
		}
		return ns, nil
	}
}

// Scheme returns the default Config.Scheme: the Kubernetes built-in types,
// submariner.io/v1 and the MCS API v1beta1.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(submv1.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.AddToScheme(s))
	return s
}

// settings is a validated Config with its defaults filled in and its typed
// callbacks turned into callbacks on unstructured objects.
type settings struct {
	name            string
	clusterID       string
	brokerNamespace string
	gvk             schema.GroupVersionKind
	syncStatus      bool
	resync          time.Duration
	workers         int
	backoff         Backoff
	log             logr.Logger
	metrics         *Metrics

	up   upSettings
	down downSettings
}

type upSettings struct {
	enabled bool
	// namespace is the sources' namespace, metav1.NamespaceAll for all.
	namespace string
	// selector selects the sources: never a copy, and ToBroker.LabelSelector.
	selector   string
	filter     func(*unstructured.Unstructured) (bool, error)
	transform  func(*unstructured.Unstructured) (*unstructured.Unstructured, error)
	brokerName BrokerNameFunc
}

type downSettings struct {
	enabled bool
	// into is the namespace of every copy when namespace is nil.
	into string
	// namespace returns the namespace of an object's copy; nil means into for all.
	namespace func(*unstructured.Unstructured) (string, error)
	filter    func(*unstructured.Unstructured) (bool, error)
	transform func(*unstructured.Unstructured) (*unstructured.Unstructured, error)
}

// settings validates c, fills in the defaults and wraps the typed callbacks. The
// error names the field and value, what is wrong and how to fix it.
func (c Config[T]) settings() (settings, error) {
	var errs []error
	if errs1 := validation.IsDNS1123Label(c.ClusterID); len(errs1) > 0 {
		errs = append(errs, fmt.Errorf("cluster ID %q is not valid (%s): use the RFC 1123 label the cluster joined with, such as cluster-1",
			c.ClusterID, strings.Join(errs1, "; ")))
	}
	if c.Local == nil {
		errs = append(errs, errors.New("no local cluster configuration (Config.Local): pass the rest.Config of the cluster the syncer runs in"))
	}
	if c.Broker == nil {
		errs = append(errs, errors.New("no broker configuration (Config.Broker): pass the rest.Config built from the broker secret"))
	}
	s := settings{
		name:            c.Name,
		clusterID:       c.ClusterID,
		brokerNamespace: c.BrokerNamespace,
		syncStatus:      c.SyncStatus,
		resync:          c.ResyncPeriod,
		workers:         c.Workers,
		backoff:         c.Backoff.withDefaults(),
		log:             c.Log,
		metrics:         c.Metrics,
	}
	if s.brokerNamespace == "" {
		s.brokerNamespace = submv1.BrokerNamespace
	}
	if errs1 := validation.IsDNS1123Label(s.brokerNamespace); len(errs1) > 0 {
		errs = append(errs, fmt.Errorf("broker namespace %q is not a namespace name (%s): leave it empty for %s",
			s.brokerNamespace, strings.Join(errs1, "; "), submv1.BrokerNamespace))
	}
	if s.resync == 0 {
		s.resync = DefaultResyncPeriod
	}
	if s.resync < 0 {
		errs = append(errs, fmt.Errorf("resync period %v is negative: use a positive duration, or 0 for %v", s.resync, DefaultResyncPeriod))
	}
	if s.workers == 0 {
		s.workers = DefaultWorkers
	}
	if s.workers < 0 {
		errs = append(errs, fmt.Errorf("worker count %d is negative: use a positive number, or 0 for %d", s.workers, DefaultWorkers))
	}
	if err := s.backoff.validate(); err != nil {
		errs = append(errs, err)
	}
	if s.log.GetSink() == nil {
		s.log = logr.Discard()
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}

	gvk, err := c.kind()
	if err != nil {
		errs = append(errs, err)
	}
	s.gvk = gvk
	if s.name == "" {
		s.name = gvk.Kind
	}
	if c.ToBroker.Disabled && c.FromBroker.Disabled {
		errs = append(errs, errors.New("both directions are disabled: enable ToBroker or FromBroker, or do not start this syncer"))
	}

	s.up = upSettings{enabled: !c.ToBroker.Disabled, brokerName: c.ToBroker.Name}
	switch ns := c.ToBroker.Namespace; ns {
	case "":
		s.up.namespace = submv1.ComponentNamespace
	case AllNamespaces:
		s.up.namespace = metav1.NamespaceAll
	default:
		if errs1 := validation.IsDNS1123Label(ns); len(errs1) > 0 {
			errs = append(errs, fmt.Errorf("source namespace %q is not a namespace name (%s): name one namespace, or use syncer.AllNamespaces",
				ns, strings.Join(errs1, "; ")))
		}
		s.up.namespace = ns
	}
	if s.up.brokerName == nil {
		s.up.brokerName = DefaultBrokerName
	}
	s.up.selector = "!" + LabelCopy
	if sel := c.ToBroker.LabelSelector; sel != "" {
		if _, err := labels.Parse(sel); err != nil {
			errs = append(errs, fmt.Errorf("label selector %q of the local objects is not valid: %w", sel, err))
		}
		s.up.selector += "," + sel
	}
	s.up.filter = typedFilter(c.ToBroker.Filter, gvk)
	s.up.transform = typedTransform(c.ToBroker.Transform, gvk)

	s.down = downSettings{enabled: !c.FromBroker.Disabled, into: submv1.ComponentNamespace}
	if ns := c.FromBroker.Into; ns != "" {
		if bad := validation.IsDNS1123Label(ns); len(bad) > 0 {
			errs = append(errs, fmt.Errorf("namespace %q of the copies is not a namespace name (%s): name one namespace, or choose per object with FromBroker.Namespace", ns, strings.Join(bad, "; ")))
		}
		s.down.into = ns
	}
	s.down.filter = typedFilter(c.FromBroker.Filter, gvk)
	s.down.transform = typedTransform(c.FromBroker.Transform, gvk)
	if f := c.FromBroker.Namespace; f != nil {
		s.down.namespace = func(u *unstructured.Unstructured) (string, error) {
			obj, err := fromUnstructured[T](u, gvk)
			if err != nil {
				return "", err
			}
			return f(obj)
		}
	}
	return s, errors.Join(errs...)
}

// kind returns the group, version and kind that T stands for.
func (c Config[T]) kind() (schema.GroupVersionKind, error) {
	var zero T
	if _, ok := any(zero).(*unstructured.Unstructured); ok {
		if c.GVK.Empty() || c.GVK.Kind == "" || c.GVK.Version == "" {
			return c.GVK, fmt.Errorf("kind %q is incomplete: with *unstructured.Unstructured set Config.GVK to the group, version and kind to sync", c.GVK)
		}
		return c.GVK, nil
	}
	scheme := c.Scheme
	if scheme == nil {
		scheme = Scheme()
	}
	gvks, _, err := scheme.ObjectKinds(newObject[T]())
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("type %T is not in the scheme (%v): register it in Config.Scheme", zero, err)
	}
	if !c.GVK.Empty() && c.GVK != gvks[0] {
		return schema.GroupVersionKind{}, fmt.Errorf("kind %q in Config.GVK contradicts type %T (%s): leave GVK empty for typed objects", c.GVK, zero, gvks[0])
	}
	return gvks[0], nil
}

// newObject returns a new, empty T.
func newObject[T Object]() T {
	var zero T
	return reflect.New(reflect.TypeOf(zero).Elem()).Interface().(T)
}

// fromUnstructured returns u as a T; the result shares nothing with u.
func fromUnstructured[T Object](u *unstructured.Unstructured, gvk schema.GroupVersionKind) (T, error) {
	if obj, ok := any(u.DeepCopy()).(T); ok {
		return obj, nil
	}
	obj := newObject[T]()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
		return obj, fmt.Errorf("converting %s %s/%s to %T: %w", gvk.Kind, u.GetNamespace(), u.GetName(), obj, err)
	}
	return obj, nil
}

// toUnstructured returns obj as an unstructured object of kind gvk.
func toUnstructured[T Object](obj T, gvk schema.GroupVersionKind) (*unstructured.Unstructured, error) {
	if u, ok := any(obj).(*unstructured.Unstructured); ok {
		return u, nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

func typedFilter[T Object](f func(T) bool, gvk schema.GroupVersionKind) func(*unstructured.Unstructured) (bool, error) {
	if f == nil {
		return nil
	}
	return func(u *unstructured.Unstructured) (bool, error) {
		obj, err := fromUnstructured[T](u, gvk)
		if err != nil {
			return false, err
		}
		return f(obj), nil
	}
}

func typedTransform[T Object](f func(T) error, gvk schema.GroupVersionKind) func(*unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if f == nil {
		return nil
	}
	return func(u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
		obj, err := fromUnstructured[T](u, gvk)
		if err != nil {
			return nil, err
		}
		if err := f(obj); err != nil {
			return nil, err
		}
		return toUnstructured(obj, gvk)
	}
}

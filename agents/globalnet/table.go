package globalnet

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// table is a compact watch-fed cache of one kind of object: a client-go Reflector
// lists and watches the API server and the table keeps, per object, only the record
// that compact extracts (a few fields instead of the whole object). With 10,000
// exported Services that is the difference between a few and many tens of MiB.
//
// Every change of a record (added, changed, removed) is reported to notify with
// the old and the new record (nil when absent), from the reflector's goroutine and
// outside the table's lock; notify only enqueues work.
type table[R any] struct {
	name    string
	compact func(obj any) (types.NamespacedName, R, error)
	notify  func(key types.NamespacedName, old, new *R)

	mu     sync.RWMutex
	items  map[string]map[string]*R // namespace -> name -> record
	count  int
	synced chan struct{}
	once   sync.Once
}

// entry is a record on its way into a table: what the table's transform makes of an
// API object. It carries its key so that client-go's stores can index it.
type entry[R any] struct {
	key types.NamespacedName
	rec R
}

// GetObjectMeta lets client-go key an entry by namespace and name.
func (e *entry[R]) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: e.key.Namespace, Name: e.key.Name}
}

func newTable[R any](name string, compact func(obj any) (types.NamespacedName, R, error), notify func(types.NamespacedName, *R, *R)) *table[R] {
	if notify == nil {
		notify = func(types.NamespacedName, *R, *R) {}
	}
	return &table[R]{name: name, compact: compact, notify: notify, items: map[string]map[string]*R{}, synced: make(chan struct{})}
}

// Transformer implements cache.TransformingStore: the reflector compacts objects
// with it before it holds many of them (a watch-list's initial events).
func (t *table[R]) Transformer() cache.TransformFunc {
	return func(obj any) (any, error) { return t.toEntry(obj) }
}

func (t *table[R]) toEntry(obj any) (*entry[R], error) {
	if e, ok := obj.(*entry[R]); ok {
		return e, nil
	}
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	key, rec, err := t.compact(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	return &entry[R]{key: key, rec: rec}, nil
}

// Add implements cache.ReflectorStore.
func (t *table[R]) Add(obj any) error { return t.Update(obj) }

// Update implements cache.ReflectorStore.
func (t *table[R]) Update(obj any) error {
	e, err := t.toEntry(obj)
	if err != nil {
		return err
	}
	t.mu.Lock()
	old := t.put(e.key, &e.rec)
	t.mu.Unlock()
	if old == nil || !reflect.DeepEqual(*old, e.rec) {
		t.notify(e.key, old, &e.rec)
	}
	return nil
}

// Delete implements cache.ReflectorStore.
func (t *table[R]) Delete(obj any) error {
	e, err := t.toEntry(obj)
	if err != nil {
		return err
	}
	t.mu.Lock()
	old := t.remove(e.key)
	t.mu.Unlock()
	if old != nil {
		t.notify(e.key, old, nil)
	}
	return nil
}

// Replace implements cache.ReflectorStore: the table becomes list, and every record
// added, changed or gone is reported. The first Replace marks the table synced
// and reports nothing: whoever waits for the table to sync reads it whole.
func (t *table[R]) Replace(list []any, _ string) error {
	fresh := make(map[types.NamespacedName]*R, len(list))
	for _, obj := range list {
		e, err := t.toEntry(obj)
		if err != nil {
			return err
		}
		fresh[e.key] = &e.rec
	}
	type change struct {
		key      types.NamespacedName
		old, new *R
	}
	var changes []change
	t.mu.Lock()
	for ns, names := range t.items {
		for name, old := range names {
			key := types.NamespacedName{Namespace: ns, Name: name}
			if _, ok := fresh[key]; !ok {
				changes = append(changes, change{key, old, nil})
			}
		}
	}
	for _, c := range changes {
		t.remove(c.key)
	}
	for key, rec := range fresh {
		if old := t.put(key, rec); old == nil || !reflect.DeepEqual(*old, *rec) {
			changes = append(changes, change{key, old, rec})
		}
	}
	t.mu.Unlock()
	select {
	case <-t.synced:
		for _, c := range changes {
			t.notify(c.key, c.old, c.new)
		}
	default:
		t.once.Do(func() { close(t.synced) })
	}
	return nil
}

// Resync implements cache.ReflectorStore.
func (t *table[R]) Resync() error { return nil }

// put stores rec under key and returns the record it replaced. Callers hold mu.
func (t *table[R]) put(key types.NamespacedName, rec *R) *R {
	names := t.items[key.Namespace]
	if names == nil {
		names = map[string]*R{}
		t.items[key.Namespace] = names
	}
	old := names[key.Name]
	if old == nil {
		t.count++
	}
	names[key.Name] = rec
	return old
}

// remove drops key and returns its record. Callers hold mu.
func (t *table[R]) remove(key types.NamespacedName) *R {
	names := t.items[key.Namespace]
	old := names[key.Name]
	if old == nil {
		return nil
	}
	delete(names, key.Name)
	if len(names) == 0 {
		delete(t.items, key.Namespace)
	}
	t.count--
	return old
}

// Get returns a copy of key's record.
func (t *table[R]) Get(key types.NamespacedName) (R, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	rec := t.items[key.Namespace][key.Name]
	if rec == nil {
		var zero R
		return zero, false
	}
	return *rec, true
}

// Named is a record with its name.
type Named[R any] struct {
	Name string
	Rec  R
}

// List returns the records of namespace ns, sorted by name. Records are shared:
// callers must not modify what they point to (slices, maps).
func (t *table[R]) List(ns string) []Named[R] {
	t.mu.RLock()
	defer t.mu.RUnlock()
	names := t.items[ns]
	out := make([]Named[R], 0, len(names))
	for name, rec := range names {
		out = append(out, Named[R]{Name: name, Rec: *rec})
	}
	slices.SortFunc(out, func(a, b Named[R]) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Keyed is a record with its key.
type Keyed[R any] struct {
	Key types.NamespacedName
	Rec R
}

// All returns every record, sorted by namespace and name.
func (t *table[R]) All() []Keyed[R] {
	t.mu.RLock()
	out := make([]Keyed[R], 0, t.count)
	for ns, names := range t.items {
		for name, rec := range names {
			out = append(out, Keyed[R]{Key: types.NamespacedName{Namespace: ns, Name: name}, Rec: *rec})
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Keyed[R]) int {
		if c := strings.Compare(a.Key.Namespace, b.Key.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Key.Name, b.Key.Name)
	})
	return out
}

// Len returns the number of records.
func (t *table[R]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// Synced is closed once the first list has arrived.
func (t *table[R]) Synced() <-chan struct{} { return t.synced }

// run lists and watches through lw until ctx is done, feeding the table.
func (t *table[R]) run(ctx context.Context, lw cache.ListerWatcher, example runtime.Object) {
	log := logr.FromContextOrDiscard(ctx).WithName(t.name)
	r := cache.NewReflectorWithOptions(lw, example, t, cache.ReflectorOptions{
		Name:   t.name,
		Logger: &log,
		// Relists are the API server's business; the table repairs nothing itself.
		ResyncPeriod: 0,
		// Watches end and restart every few minutes.
		MinWatchTimeout: 5 * time.Minute,
	})
	r.RunWithContext(ctx)
}

var _ cache.TransformingStore = (*table[struct{}])(nil)

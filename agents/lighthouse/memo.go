package lighthouse

import (
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ownWrites remembers the agent's last write to each object until its cache has
// caught up. A reconcile that runs right after the agent's own write (the write's
// own watch event, or another event) would otherwise plan from the older object
// in the cache and send a write the API server refuses (conflict, already
// exists), wasting a round trip and a retry, which under a burst of exports
// add up.
type ownWrites[T client.Object] struct {
	mu sync.Mutex
	m  map[client.ObjectKey]written[T]
}

// written is the last write to one object: the object as the API server
// returned it (the zero T after a delete), and the resourceVersions it replaced
// ("" for an object that did not exist).
type written[T client.Object] struct {
	obj        T
	deleted    bool
	superseded map[string]bool
}

func newOwnWrites[T client.Object]() *ownWrites[T] {
	return &ownWrites[T]{m: map[client.ObjectKey]written[T]{}}
}

// view returns what to believe about the object key that the cache shows as
// cached (exists false: not in the cache): the agent's own later write while
// the cache still shows a version that write replaced, else the cache (and the
// memo is dropped: the cache has caught up, or someone else wrote since).
func (w *ownWrites[T]) view(key client.ObjectKey, cached T, exists bool) (T, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.m[key]
	if !ok {
		return cached, exists
	}
	rv := ""
	if exists {
		rv = cached.GetResourceVersion()
	}
	if e.superseded[rv] {
		return e.obj, !e.deleted
	}
	delete(w.m, key)
	return cached, exists
}

// wrote records a write to key that replaced before (existed false: there was
// none) with after (deleted: the object is gone).
func (w *ownWrites[T]) wrote(key client.ObjectKey, before T, existed bool, after T, deleted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	superseded := map[string]bool{}
	if e, ok := w.m[key]; ok {
		for rv := range e.superseded {
			superseded[rv] = true
		}
	}
	if existed {
		superseded[before.GetResourceVersion()] = true
	} else {
		superseded[""] = true
	}
	if !deleted {
		delete(superseded, after.GetResourceVersion())
	}
	w.m[key] = written[T]{obj: after, deleted: deleted, superseded: superseded}
}

// forget drops what the memo knows about key: after a failed write the API
// server's own answer is needed.
func (w *ownWrites[T]) forget(key client.ObjectKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}

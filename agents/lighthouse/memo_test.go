package lighthouse

import (
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestOwnWrites(t *testing.T) {
	key := client.ObjectKey{Namespace: "demo", Name: "web-cluster2"}
	version := func(rv string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: rv}}
	}
	type step struct {
		name       string
		cached     *discoveryv1.EndpointSlice // nil: not in the cache
		wantRV     string                     // "": believed absent
		wantExists bool
	}
	check := func(t *testing.T, w *ownWrites[*discoveryv1.EndpointSlice], steps []step) {
		t.Helper()
		for _, s := range steps {
			got, exists := w.view(key, s.cached, s.cached != nil)
			rv := ""
			if exists {
				rv = got.ResourceVersion
			}
			if exists != s.wantExists || rv != s.wantRV {
				t.Errorf("%s: view = %q exists %v, want %q exists %v", s.name, rv, exists, s.wantRV, s.wantExists)
			}
		}
	}

	t.Run("created, then the cache catches up", func(t *testing.T) {
		w := newOwnWrites[*discoveryv1.EndpointSlice]()
		w.wrote(key, nil, false, version("5"), false)
		check(t, w, []step{
			{"not in the cache yet", nil, "5", true},
			{"the cache shows it", version("5"), "5", true},
			// The memo is gone: a later deletion by someone else shows.
			{"deleted by someone else", nil, "", false},
		})
	})
	t.Run("created, updated, status updated: every older version is superseded", func(t *testing.T) {
		w := newOwnWrites[*discoveryv1.EndpointSlice]()
		w.wrote(key, nil, false, version("5"), false)
		w.wrote(key, version("5"), true, version("6"), false)
		w.wrote(key, version("6"), true, version("7"), false)
		check(t, w, []step{
			{"cache without it", nil, "7", true},
			{"cache at the create", version("5"), "7", true},
			{"cache at the update", version("6"), "7", true},
			{"someone else's newer write", version("9"), "9", true},
		})
	})
	t.Run("deleted while the cache still shows it", func(t *testing.T) {
		w := newOwnWrites[*discoveryv1.EndpointSlice]()
		w.wrote(key, version("5"), true, nil, true)
		check(t, w, []step{
			{"cache still shows the deleted version", version("5"), "", false},
			{"cache caught up", nil, "", false},
		})
	})
	t.Run("forgotten after a failed write", func(t *testing.T) {
		w := newOwnWrites[*discoveryv1.EndpointSlice]()
		w.wrote(key, nil, false, version("5"), false)
		w.forget(key)
		check(t, w, []step{{"the cache is believed", nil, "", false}})
	})
}

package cable

import submv1 "github.com/submariner-go/submariner/crds/v1"

// Unregister removes a driver registered by a test, so that repeated runs can
// register it again.
func Unregister(b submv1.Backend) {
	registryMu.Lock()
	defer registryMu.Unlock()
	delete(registry, b)
}

package lighthouse

// Ready implements the ready.Readiness interface: the plugin is ready once its
// informers have delivered the initial lists of ServiceImports, EndpointSlices and
// (when the Gateway API exists) Gateways. Until then it answers SERVFAIL.
func (lh *Lighthouse) Ready() bool { return lh.ctrl.HasSynced() }

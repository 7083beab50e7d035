// Package lighthouse is the lighthouse agent (DESIGN.md section 3, "Discovery"):
// it implements the Multi-Cluster Services API (sigs.k8s.io/mcs-api v1beta1) for
// a Submariner clusterset, over the broker, with agents/syncer for transport.
//
//	cluster2 (exports)                         broker                           cluster1 (imports)
//	ServiceExport demo/web ─┐
//	Service demo/web ───────┼─ export ──> ServiceImport web-demo ── syncer ──> ServiceImport demo/web
//	                        │  controller    (record of cluster2)    (down)     (live clusters' merge)
//	EndpointSlices of web ──┴─ slice ───> EndpointSlice web-cluster2 ─ syncer ─> EndpointSlice web-cluster2...
//	                           controller   in demo, synced up          (down)    in demo
//	Lease lighthouse-cluster2 ──renewed──> (every third of --lease-duration) ──> liveness of cluster2
//
// The export controller keeps this cluster's record of each ServiceExport (the
// Service's type, ports, session affinity and the export's creation time) in the
// aggregated ServiceImport <service>-<namespace> on the broker, from which every
// agent merges the same spec (Merge: the oldest export decides, ports are the
// union) and the same conflicts, and it writes the export's Valid, Ready and
// Conflict conditions. The slice controller mirrors the Service's EndpointSlices
// into the cluster's lighthouse EndpointSlices (DesiredSlices), which a syncer
// pushes to the broker; two more syncers bring the aggregated ServiceImports and
// the other clusters' slices into every cluster that has the namespace, where
// the lighthouse CoreDNS plugin answers clusterset.local from them. Each agent
// renews a Lease on the broker; the other agents drop the slices of a cluster
// whose Lease runs out, and its record from their ServiceImports, until it
// renews. README.md has the details.
package lighthouse

// Package gateway is the gateway engine (DESIGN.md sections 2 and 3): it runs on
// every node labelled submariner.io/gateway=true, and the gateways of a cluster
// elect one active gateway through the Lease submariner-gateway-lock.
//
// Every gateway, active or passive, prepares its cable driver at start (keys,
// device, pluto), so that a takeover only has to connect, and reports itself in
// the Gateway object named after its node. The active gateway publishes the
// cluster's Endpoint (evicting any other gateway's), runs the broker syncer for
// Endpoints and Clusters, keeps one tunnel to the newest Endpoint of every remote
// cluster through the cable engine (PlanTunnels, Engine), probes the remote
// gateways through the tunnels (HealthChecker) and merges it all into its Gateway
// status. Losing the Lease neither stops the process nor tears the tunnels down;
// the tunnels go once another gateway of the cluster has published its Endpoint.
// Stopping (SIGTERM) releases the Lease first, then closes the driver.
//
// The cable drivers live in package cable and its sub-packages; this package
// never imports a concrete driver. README.md explains the timings, the packet
// path and what the manifests must provide.
package gateway

// Package routeagent is the route agent that runs on every node of a cluster
// (DESIGN.md sections 2 and 3): it learns the active local gateway and the remote
// clusters from the submariner.io/v1 Endpoints in its namespace, and the nodes'
// addresses from the Nodes, and converges its node's kernel:
//
//   - vx-submariner (VXLAN, VNI 100, UDP 4800, VTEP 240.x.y.z/8): on a node that is
//     not the active gateway it points at the gateway, and the main table routes
//     every remote subnet through it; on the active gateway it has no remote and
//     floods to every other node;
//   - iptables rules in the agent's own chains (SUBMARINER-POSTROUTING in nat and
//     mangle, SUBMARINER-FORWARD and SUBMARINER-INPUT in filter), written with one
//     iptables-restore per sync: no SNAT of cross-cluster traffic, forwarding to and
//     from remote subnets, the overlay's UDP port, TCP MSS clamping;
//   - sysctls: forwarding on, reverse-path filtering not strict on the interfaces
//     cross-cluster traffic enters by.
//
// The work is split the usual way: Plan computes the whole desired state from the
// inputs without I/O; Agent hands that state to the netkit convergers (vxlan,
// iptables) and sysctls through the Kernel interfaces; the controller watches the
// API and calls Agent.Sync with a fresh Input on every relevant change. README.md
// draws the packet path.
package routeagent

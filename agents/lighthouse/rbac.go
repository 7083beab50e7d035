package lighthouse

import (
	rbacv1 "k8s.io/api/rbac/v1"
)

// ClusterRules are the permissions the agent needs in its own cluster (a
// ClusterRole: exports and copies live in every namespace). The integration
// tests run the agent with exactly these.
func ClusterRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		// The users' exports, and their conditions.
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports/status"}, Verbs: []string{"patch"}},
		// The copies of the aggregated ServiceImports, with their status.
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceimports"},
			Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceimports/status"}, Verbs: []string{"update"}},
		// The exported Services' own slices (read), the agent's slices and the
		// copies of the other clusters' (written).
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"},
			Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		// The exported Services.
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
		// With Globalnet, the exported Services' global IPs.
		{APIGroups: []string{"submariner.io"}, Resources: []string{"globalingressips"}, Verbs: []string{"get", "list", "watch"}},
		// Copies wait for their namespace.
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}},
	}
}

// BrokerRules are the permissions the agent needs in the broker namespace (a
// Role bound to the cluster's identity there). The broker's admission policy
// is expected to narrow the writes of EndpointSlices and Leases to the
// cluster's own (label submariner-io/clusterID); the aggregated ServiceImports
// belong to no single cluster (see README.md).
func BrokerRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		// The aggregated ServiceImports: every exporting cluster writes its record.
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceimports"},
			Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceimports/status"}, Verbs: []string{"update"}},
		// The cluster's slices (written), everyone's (read).
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"},
			Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		// The cluster's liveness Lease (written; deleted by --uninstall), everyone's (read).
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
			Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
	}
}

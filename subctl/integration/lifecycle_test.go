package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/subctl/brokerinfo"
	"github.com/submariner-go/submariner/subctl/coredns"
	"github.com/submariner-go/submariner/subctl/join"
)

const kubeadmCorefile = ".:53 {\n    errors\n    health\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa\n    forward . /etc/resolv.conf\n    cache 30\n}\n"

// TestLifecycle deploys a broker, joins two clusters and checks the whole life of a
// clusterset on real API servers:
//
//		          broker (deploy-broker)
//		         /                      \
//		cluster1 (join, libreswan)    cluster2 (join, vxlan)
//		  kube-controller-manager,
//		  kube-scheduler, 2 nodes
//
//	  - join stores the cluster's broker identity, patches CoreDNS, labels the
//	    gateway node and publishes the Cluster;
//	  - with the syncer (agents/syncer) running in-process on each cluster's stored
//	    identity, each cluster sees the other's Cluster, and an Endpoint made in
//	    cluster1 reaches cluster2;
//	  - the broker's admission policy refuses cluster2's identity any write to
//	    cluster1's objects, and the joiner anything but cluster identities;
//	  - re-running join with the same settings changes nothing, with new ones updates;
//	  - uninstall waits for the cleanup pods on every node before it removes
//	    anything, then leaves nothing of ours in cluster1 or on the broker.
func TestLifecycle(t *testing.T) {
	planes := controlplane.Start(t, "broker", "cluster1", "cluster2")
	b, c1, c2 := planes[0], planes[1], planes[2]
	ctx := context.Background()

	// cluster1 is a cluster with nodes, controllers and a kubeadm-like CoreDNS.
	startControllers(t, c1)
	addNodes(t, c1.Kube, "c1-gw1", "c1-node1")
	var cleanupDone atomic.Bool
	fakeKubelet(t, c1.Kube, func(p *corev1.Pod) bool { return !inCleanupMode(p) || cleanupDone.Load() })
	if _, err := c1.Kube.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system"},
		Data:       map[string]string{"Corefile": kubeadmCorefile},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	info := deployBroker(t, b)
	st, err := os.Stat(info)
	if err != nil || st.Mode().Perm() != brokerinfo.FileMode {
		t.Fatalf("broker-info: %v, mode %v; want mode %v", err, st.Mode().Perm(), brokerinfo.FileMode)
	}
	parsed, err := brokerinfo.ReadFile(info)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.BrokerURL != strings.TrimSuffix(b.Config.Host, "/") || len(parsed.IPsecPSK) != brokerinfo.PSKLength || parsed.CA != string(b.Config.CAData) {
		t.Errorf("broker-info: URL %s, %d-byte key, CA matches %v; want %s, %d bytes, the broker's CA",
			parsed.BrokerURL, len(parsed.IPsecPSK), parsed.CA == string(b.Config.CAData), b.Config.Host, brokerinfo.PSKLength)
	}
	// A second deploy-broker keeps the key and writes a fresh, working file.
	info2 := deployBroker(t, b)
	parsed2, err := brokerinfo.ReadFile(info2)
	if err != nil || string(parsed2.IPsecPSK) != string(parsed.IPsecPSK) {
		t.Errorf("a second deploy-broker changed the pre-shared key (err %v)", err)
	}

	mustSubctl(t, "join", info, "--kubeconfig", c1.Kubeconfig, "--clusterid", "cluster1",
		"--clustercidr", "10.1.0.0/16", "--servicecidr", "10.101.0.0/16", "--label-gateway", "c1-gw1")
	mustSubctl(t, "join", info2, "--kubeconfig", c2.Kubeconfig, "--clusterid", "cluster2", "--cable-driver", "vxlan",
		"--clustercidr", "10.2.0.0/16", "--servicecidr", "10.102.0.0/16", "--natt=false")

	t.Run("join", func(t *testing.T) {
		// The stored identity is the cluster's own.
		for id, p := range map[string]*controlplane.Plane{"cluster1": c1, "cluster2": c2} {
			s := brokerSecret(t, p)
			if string(s.Data[component.BrokerSecretServer]) != strings.TrimSuffix(b.Config.Host, "/") || string(s.Data[component.BrokerSecretCA]) != string(b.Config.CAData) {
				t.Errorf("%s's broker Secret does not point at the broker", id)
			}
			r, err := clusterIdentity(t, b, p).Kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
			if err != nil || r.Status.UserInfo.Username != join.IdentityUser(submv1.BrokerNamespace, id) {
				t.Errorf("%s's stored token: %v, %v; want %s", id, r, err, join.IdentityUser(submv1.BrokerNamespace, id))
			}
		}
		// The Clusters are on the broker, labelled, named as the syncer names them.
		var clusters submv1.ClusterList
		if err := b.Client.List(ctx, &clusters, client.InNamespace(submv1.BrokerNamespace)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range clusters.Items {
			got = append(got, c.Name+" "+c.Labels[submv1.ClusterIDLabel]+" "+strings.Join(c.Spec.ClusterCIDR, ",")+" "+strings.Join(c.Spec.ServiceCIDR, ","))
		}
		if diff := cmp.Diff([]string{
			"cluster1.submariner-operator.cluster1 cluster1 10.1.0.0/16 10.101.0.0/16",
			"cluster2.submariner-operator.cluster2 cluster2 10.2.0.0/16 10.102.0.0/16",
		}, got); diff != "" {
			t.Errorf("Clusters on the broker (-want +got):\n%s", diff)
		}
		// The configuration and the components.
		cm, err := c2.Kube.CoreV1().ConfigMaps(submv1.ComponentNamespace).Get(ctx, manifests.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]string{
			"BROKER_K8S_REMOTENAMESPACE": submv1.BrokerNamespace,
			"BROKER_K8S_SECRET_DIR":      component.DefaultBrokerSecretDir,
			"SUBMARINER_CABLEDRIVER":     "vxlan",
			"SUBMARINER_CLUSTERCIDR":     "10.2.0.0/16",
			"SUBMARINER_CLUSTERID":       "cluster2",
			"SUBMARINER_GLOBALCIDR":      "",
			"SUBMARINER_NAMESPACE":       submv1.ComponentNamespace,
			"SUBMARINER_NATENABLED":      "false",
			"SUBMARINER_SERVICECIDR":     "10.102.0.0/16",
		}, cm.Data); diff != "" {
			t.Errorf("cluster2's %s (-want +got):\n%s", manifests.ConfigMapName, diff)
		}
		psk, err := c1.Kube.CoreV1().Secrets(submv1.ComponentNamespace).Get(ctx, manifests.PSKSecretName, metav1.GetOptions{})
		if err != nil || string(psk.Data[manifests.PSKSecretKey]) != string(parsed.IPsecPSK) {
			t.Errorf("cluster1's pre-shared key Secret does not hold the broker's key (err %v)", err)
		}
		// CoreDNS forwards clusterset.local to the lighthouse CoreDNS Service.
		svc, err := c1.Kube.CoreV1().Services(submv1.ComponentNamespace).Get(ctx, manifests.LighthouseCoreDNSService, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := coredns.Patch(kubeadmCorefile, netip.MustParseAddr(svc.Spec.ClusterIP))
		if err != nil {
			t.Fatal(err)
		}
		dns, _ := c1.Kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if diff := cmp.Diff(want, dns.Data["Corefile"]); diff != "" {
			t.Errorf("cluster1's Corefile (-want +got):\n%s", diff)
		}
		node, _ := c1.Kube.CoreV1().Nodes().Get(ctx, "c1-gw1", metav1.GetOptions{})
		if node.Labels[submv1.GatewayLabel] != "true" {
			t.Errorf("c1-gw1 is not labelled as a gateway: %v", node.Labels)
		}
		// The real DaemonSet controller and scheduler put the gateway on the gateway
		// node only and the route agent everywhere; the Deployments' pods land on
		// some node (CoreDNS runs two replicas).
		eventually(t, "the components' pods running on their nodes", func() (bool, error) {
			got, err := podsByNode(ctx, c1)
			want := []string{"submariner-gateway c1-gw1", "submariner-lighthouse-agent", "submariner-lighthouse-coredns", "submariner-lighthouse-coredns",
				"submariner-routeagent c1-gw1", "submariner-routeagent c1-node1"}
			if err == nil && !cmp.Equal(got, want) {
				err = fmt.Errorf("pods %q, want %q", got, want)
			}
			return err == nil, err
		})
	})

	t.Run("syncer", func(t *testing.T) {
		// The gateway's syncer, in-process, with each cluster's stored identity: the
		// broker's admission policy checks every write it makes.
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		for id, p := range map[string]*controlplane.Plane{"cluster1": c1, "cluster2": c2} {
			identity := rest.CopyConfig(clusterIdentity(t, b, p).Config)
			runSyncer(t, sctx, syncer.Config[*submv1.Cluster]{ClusterID: id, Local: p.Config, Broker: identity})
			runSyncer(t, sctx, syncer.Config[*submv1.Endpoint]{ClusterID: id, Local: p.Config, Broker: identity})
		}
		for id, p := range map[string]*controlplane.Plane{"cluster1": c2, "cluster2": c1} {
			eventually(t, "the Cluster of "+id+" reaching "+p.Name, func() (bool, error) {
				return hasCluster(ctx, p, id)
			})
		}
		ep := endpoint("cluster1", "cluster1-gw1", "192.0.2.11")
		ep.Namespace = submv1.ComponentNamespace
		if err := c1.Client.Create(ctx, ep); err != nil {
			t.Fatal(err)
		}
		eventually(t, "cluster1's Endpoint reaching cluster2", func() (bool, error) {
			var eps submv1.EndpointList
			err := c2.Client.List(ctx, &eps, client.InNamespace(submv1.ComponentNamespace))
			for _, e := range eps.Items {
				if e.Spec.ClusterID == "cluster1" && e.Spec.PrivateIP == "192.0.2.11" {
					return true, err
				}
			}
			return false, err
		})
	})

	t.Run("admission", func(t *testing.T) {
		id1, id2 := clusterIdentity(t, b, c1), clusterIdentity(t, b, c2)
		// cluster1 publishes its Endpoint on the broker itself; cluster2 reads it.
		ep := endpoint("cluster1", "cluster1-direct", "192.0.2.12")
		if err := id1.Client.Create(ctx, ep); err != nil {
			t.Fatalf("cluster1 creating its own Endpoint: %v", err)
		}
		var read submv1.Endpoint
		if err := id2.Client.Get(ctx, client.ObjectKeyFromObject(ep), &read); err != nil || read.Spec.PrivateIP != "192.0.2.12" {
			t.Fatalf("cluster2 reading cluster1's Endpoint: %v (%+v)", err, read.Spec)
		}
		user2 := join.IdentityUser(submv1.BrokerNamespace, "cluster2")
		steal := read.DeepCopy()
		steal.Spec.PrivateIP = "203.0.113.66"
		err := id2.Client.Update(ctx, steal)
		forbidden(t, err, "cluster cluster2 ("+user2+") may not update endpoints submariner-k8s-broker/cluster1-direct, which belongs to cluster cluster1")
		err = id2.Client.Delete(ctx, read.DeepCopy())
		forbidden(t, err, "cluster cluster2 ("+user2+") may not delete endpoints submariner-k8s-broker/cluster1-direct, which belongs to cluster cluster1")
		err = id2.Client.Create(ctx, endpoint("cluster1", "fake-cluster1", "203.0.113.66"))
		forbidden(t, err, "cluster cluster2 ("+user2+") may only write objects labelled submariner-io/clusterID=cluster2, but endpoints submariner-k8s-broker/fake-cluster1 is labelled as belonging to cluster cluster1")
		lying := endpoint("cluster2", "lying", "203.0.113.66")
		lying.Spec.ClusterID = "cluster1"
		err = id2.Client.Create(ctx, lying)
		forbidden(t, err, "may not write endpoints submariner-k8s-broker/lying with spec.cluster_id cluster1: it may only publish its own cluster cluster2")
		// Its own objects are its to write, but not to give away.
		own := endpoint("cluster2", "cluster2-direct", "192.0.2.22")
		if err := id2.Client.Create(ctx, own); err != nil {
			t.Fatalf("cluster2 creating its own Endpoint: %v", err)
		}
		giveAway := own.DeepCopy()
		giveAway.Labels[submv1.ClusterIDLabel] = "cluster1"
		forbidden(t, id2.Client.Update(ctx, giveAway), "is labelled as belonging to cluster cluster1")
		if err := id2.Client.Delete(ctx, own); err != nil {
			t.Errorf("cluster2 deleting its own Endpoint: %v", err)
		}
		// A shared ServiceImport: each cluster writes only its own record in it,
		// and deletes it only when no other cluster's record is left.
		si := &mcsv1beta1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Name: "web-demo", Namespace: submv1.BrokerNamespace, Annotations: map[string]string{
				"timestamp.submariner.io/cluster1": "1", "export.lighthouse.submariner.io/cluster1": "{}",
			}},
			Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, Ports: []mcsv1beta1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
		}
		if err := id1.Client.Create(ctx, si); err != nil {
			t.Fatalf("cluster1 creating a ServiceImport with its record: %v", err)
		}
		joinIn := si.DeepCopy()
		joinIn.Annotations["timestamp.submariner.io/cluster2"], joinIn.Annotations["export.lighthouse.submariner.io/cluster2"] = "2", "{}"
		if err := id2.Client.Update(ctx, joinIn); err != nil {
			t.Fatalf("cluster2 adding its record: %v", err)
		}
		tamper := joinIn.DeepCopy()
		tamper.Annotations["export.lighthouse.submariner.io/cluster1"] = `{"type":"Headless"}`
		forbidden(t, id2.Client.Update(ctx, tamper),
			"may only change its own records in serviceimports submariner-k8s-broker/web-demo, not export.lighthouse.submariner.io/cluster1")
		drop := joinIn.DeepCopy()
		delete(drop.Annotations, "timestamp.submariner.io/cluster1")
		forbidden(t, id2.Client.Update(ctx, drop), "not timestamp.submariner.io/cluster1")
		forbidden(t, id2.Client.Delete(ctx, joinIn.DeepCopy()),
			"may not delete serviceimports submariner-k8s-broker/web-demo: it still holds the records timestamp.submariner.io/cluster1")
		leave := joinIn.DeepCopy()
		delete(leave.Annotations, "timestamp.submariner.io/cluster1")
		delete(leave.Annotations, "export.lighthouse.submariner.io/cluster1")
		if err := id1.Client.Update(ctx, leave); err != nil {
			t.Fatalf("cluster1 removing its record: %v", err)
		}
		if err := id2.Client.Delete(ctx, leave.DeepCopy()); err != nil {
			t.Errorf("cluster2, the last exporter, deleting the ServiceImport: %v", err)
		}

		// Nobody but the cluster itself removes its identity.
		err = id2.Kube.CoreV1().ServiceAccounts(submv1.BrokerNamespace).Delete(ctx, "cluster-cluster1", metav1.DeleteOptions{})
		forbidden(t, err, user2+" may not delete serviceaccounts submariner-k8s-broker/cluster-cluster1")
		// RBAC keeps the cluster identities away from everything else.
		_, err = id2.Kube.CoreV1().Secrets(submv1.BrokerNamespace).List(ctx, metav1.ListOptions{})
		forbidden(t, err, "")

		// The joiner may create cluster identities and nothing else.
		joiner := asIdentity(t, b, parsed.JoinerToken)
		_, err = joiner.Kube.CoreV1().ServiceAccounts(submv1.BrokerNamespace).Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "admin"}}, metav1.CreateOptions{})
		forbidden(t, err, "may only create ServiceAccounts named cluster-<clusterID>, not submariner-k8s-broker/admin")
		_, err = joiner.Kube.CoreV1().ServiceAccounts(submv1.BrokerNamespace).CreateToken(ctx, manifests.BrokerJoiner,
			&authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		forbidden(t, err, "may only request tokens of cluster identities (cluster-<clusterID>), not of submariner-k8s-broker/submariner-k8s-broker-joiner")
		_, err = joiner.Kube.RbacV1().RoleBindings(submv1.BrokerNamespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-evil"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: manifests.BrokerClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "cluster-cluster1", Namespace: submv1.BrokerNamespace}},
		}, metav1.CreateOptions{})
		forbidden(t, err, "may only bind Role submariner-k8s-broker-cluster to the ServiceAccount cluster-<clusterID> the RoleBinding is named after")
		_, err = joiner.Kube.RbacV1().RoleBindings(submv1.BrokerNamespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-evil"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: manifests.BrokerJoiner},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "cluster-evil", Namespace: submv1.BrokerNamespace}},
		}, metav1.CreateOptions{})
		forbidden(t, err, "")
		err = joiner.Client.Create(ctx, endpoint("cluster1", "from-joiner", "203.0.113.66"))
		forbidden(t, err, "")
		_, err = joiner.Kube.CoreV1().Secrets(submv1.BrokerNamespace).Get(ctx, manifests.PSKSecretName, metav1.GetOptions{})
		forbidden(t, err, "")
	})

	t.Run("rejoin", func(t *testing.T) {
		args := []string{"join", info2, "--kubeconfig", c2.Kubeconfig, "--clusterid", "cluster2", "--cable-driver", "vxlan",
			"--clustercidr", "10.2.0.0/16", "--servicecidr", "10.102.0.0/16", "--natt=false"}
		beforeCluster, beforeBroker := snapshot(t, c2), snapshot(t, b)
		mustSubctl(t, args...)
		if diff := cmp.Diff(beforeCluster, snapshot(t, c2)); diff != "" {
			t.Errorf("re-running join with the same settings changed cluster2 (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(beforeBroker, snapshot(t, b)); diff != "" {
			t.Errorf("re-running join with the same settings changed the broker (-before +after):\n%s", diff)
		}
		// New settings: another cable driver and NAT on.
		args[7] = "wireguard"
		args[len(args)-1] = "--natt=true"
		mustSubctl(t, args...)
		var ds appsv1.DaemonSet
		if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: submv1.ComponentNamespace, Name: manifests.GatewayDaemonSet}, &ds); err != nil {
			t.Fatal(err)
		}
		mounts := map[string]bool{}
		for _, m := range ds.Spec.Template.Spec.Containers[0].VolumeMounts {
			mounts[m.MountPath] = true
		}
		if !mounts["/dev/net/tun"] || !mounts["/run/secrets/submariner.io/"+manifests.PSKSecretName] {
			t.Errorf("the gateway was not switched to WireGuard: mounts %v", mounts)
		}
		cm, _ := c2.Kube.CoreV1().ConfigMaps(submv1.ComponentNamespace).Get(ctx, manifests.ConfigMapName, metav1.GetOptions{})
		if cm.Data["SUBMARINER_CABLEDRIVER"] != "wireguard" || cm.Data["SUBMARINER_NATENABLED"] != "true" {
			t.Errorf("the configuration was not updated: %v", cm.Data)
		}
		// A rotated token replaces the stored one and works.
		old := string(brokerSecret(t, c2).Data[component.BrokerSecretToken])
		mustSubctl(t, append(args, "--rotate-token")...)
		if string(brokerSecret(t, c2).Data[component.BrokerSecretToken]) == old {
			t.Error("--rotate-token kept the old token")
		}
		r, err := clusterIdentity(t, b, c2).Kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil || r.Status.UserInfo.Username != join.IdentityUser(submv1.BrokerNamespace, "cluster2") {
			t.Errorf("the rotated token does not authenticate as cluster2: %v", err)
		}
	})

	t.Run("show and export", func(t *testing.T) {
		out := mustSubctl(t, "show", "networks", "--kubeconfig", c2.Kubeconfig)
		if !strings.Contains(out, "cluster2     local    10.2.0.0/16   10.102.0.0/16   -") {
			t.Errorf("show networks does not list cluster2 as local:\n%s", out)
		}
		_, err := subctl(t, "export", "service", "web", "-n", "default", "--kubeconfig", c2.Kubeconfig)
		wantError(t, err, "service default/web does not exist: create it first")
		if _, err := c2.Kube.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if out := mustSubctl(t, "export", "service", "web", "-n", "default", "--kubeconfig", c2.Kubeconfig); out != "✓ Service default/web exported\n" {
			t.Errorf("export said %q", out)
		}
		if out := mustSubctl(t, "unexport", "service", "web", "--kubeconfig", c2.Kubeconfig); out != "✓ Service default/web unexported\n" {
			t.Errorf("unexport said %q", out)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, err := subctl(t, "uninstall", "--kubeconfig", c1.Kubeconfig, "--timeout", "3m")
			done <- err
		}()
		// The components switch into cleanup mode (the DaemonSets on every node,
		// the lighthouse agent in its one pod), and until their cleanup pods are
		// ready nothing is removed.
		eventually(t, "cleanup pods on every node", func() (bool, error) {
			pods, err := c1.Kube.CoreV1().Pods(submv1.ComponentNamespace).List(ctx, metav1.ListOptions{})
			var nodes []string
			for _, p := range pods.Items {
				if inCleanupMode(&p) && p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
					nodes = append(nodes, p.Labels["app"]+" "+p.Spec.NodeName)
				}
			}
			if err == nil && len(nodes) != 4 {
				err = fmt.Errorf("cleanup pods %q, want the gateway's, the route agent's on both nodes and the lighthouse agent's", nodes)
			}
			return len(nodes) == 4, err
		})
		select {
		case err := <-done:
			t.Fatalf("uninstall ended before the cleanup pods were ready: %v", err)
		case <-time.After(2 * time.Second):
		}
		if ok, err := hasCluster(ctx, b, "cluster1"); !ok || err != nil {
			t.Errorf("uninstall removed cluster1 from the broker before its nodes were clean (err %v)", err)
		}
		if _, err := c1.Kube.AppsV1().DaemonSets(submv1.ComponentNamespace).Get(ctx, manifests.GatewayDaemonSet, metav1.GetOptions{}); err != nil {
			t.Errorf("uninstall removed the gateway before its nodes were clean: %v", err)
		}
		cleanupDone.Store(true)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("uninstall did not end")
		}

		// Nothing of ours is left in cluster1 ...
		if _, err := c1.Kube.CoreV1().Namespaces().Get(ctx, submv1.ComponentNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s: %v, want it gone", submv1.ComponentNamespace, err)
		}
		var crds apiextensionsv1.CustomResourceDefinitionList
		if err := c1.Client.List(ctx, &crds); err != nil {
			t.Fatal(err)
		}
		for _, crd := range crds.Items {
			t.Errorf("CRD %s is left", crd.Name)
		}
		for _, what := range []string{"clusterroles", "clusterrolebindings"} {
			var names []string
			if what == "clusterroles" {
				l, _ := c1.Kube.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=submariner"})
				for _, r := range l.Items {
					names = append(names, r.Name)
				}
			} else {
				l, _ := c1.Kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=submariner"})
				for _, r := range l.Items {
					names = append(names, r.Name)
				}
			}
			if len(names) > 0 {
				t.Errorf("%s left: %v", what, names)
			}
		}
		dns, _ := c1.Kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if diff := cmp.Diff(kubeadmCorefile, dns.Data["Corefile"]); diff != "" {
			t.Errorf("the Corefile is not as before join (-want +got):\n%s", diff)
		}
		node, _ := c1.Kube.CoreV1().Nodes().Get(ctx, "c1-gw1", metav1.GetOptions{})
		if _, ok := node.Labels[submv1.GatewayLabel]; ok {
			t.Errorf("c1-gw1 keeps the gateway label join added")
		}
		// ... nor of cluster1 on the broker, while cluster2 is untouched.
		for _, id := range []string{"cluster1", "cluster2"} {
			want := id == "cluster2"
			if ok, err := hasCluster(ctx, b, id); ok != want || err != nil {
				t.Errorf("Cluster %s on the broker: %v (err %v), want %v", id, ok, err, want)
			}
			var eps submv1.EndpointList
			if err := b.Client.List(ctx, &eps, client.InNamespace(submv1.BrokerNamespace), client.MatchingLabels{submv1.ClusterIDLabel: id}); err != nil {
				t.Fatal(err)
			}
			if id == "cluster1" && len(eps.Items) > 0 {
				t.Errorf("cluster1 leaves %d Endpoints on the broker", len(eps.Items))
			}
			for _, get := range []func() error{
				func() error {
					_, err := b.Kube.CoreV1().ServiceAccounts(submv1.BrokerNamespace).Get(ctx, join.IdentityName(id), metav1.GetOptions{})
					return err
				},
				func() error {
					_, err := b.Kube.RbacV1().RoleBindings(submv1.BrokerNamespace).Get(ctx, join.IdentityName(id), metav1.GetOptions{})
					return err
				},
			} {
				if err := get(); want != (err == nil) {
					t.Errorf("identity of %s on the broker: %v, want present %v", id, err, want)
				}
			}
		}
		// Uninstalling again finds nothing to do.
		out := mustSubctl(t, "uninstall", "--kubeconfig", c1.Kubeconfig)
		if !strings.Contains(out, "nothing to uninstall") {
			t.Errorf("a second uninstall said:\n%s", out)
		}
	})
}

// forbidden checks that err is the API server's Forbidden, containing message.
func forbidden(t *testing.T, err error, message string) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("got %v, want Forbidden", err)
		return
	}
	if !strings.Contains(err.Error(), message) {
		t.Errorf("Forbidden %q does not say %q", err, message)
	}
}

func hasCluster(ctx context.Context, p *controlplane.Plane, id string) (bool, error) {
	ns := submv1.ComponentNamespace
	if p.Name == "broker" {
		ns = submv1.BrokerNamespace
	}
	var list submv1.ClusterList
	if err := p.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return false, err
	}
	for _, c := range list.Items {
		if c.Spec.ClusterID == id {
			return true, nil
		}
	}
	return false, nil
}

// podsByNode lists the component pods bound to a node, sorted, as "app node"
// for a DaemonSet's and as "app" for a Deployment's (which lands anywhere).
func podsByNode(ctx context.Context, p *controlplane.Plane) ([]string, error) {
	pods, err := p.Kube.CoreV1().Pods(submv1.ComponentNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, pod := range pods.Items {
		if pod.Spec.NodeName != "" && pod.DeletionTimestamp == nil {
			if owner := metav1.GetControllerOf(&pod); owner != nil && owner.Kind == "ReplicaSet" {
				out = append(out, pod.Labels["app"])
			} else {
				out = append(out, pod.Labels["app"]+" "+pod.Spec.NodeName)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// runSyncer runs a syncer until ctx ends.
func runSyncer[T syncer.Object](t *testing.T, ctx context.Context, cfg syncer.Config[T]) {
	t.Helper()
	s, err := syncer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("syncer: %v", err)
		}
	}()
	t.Cleanup(func() { <-done })
}

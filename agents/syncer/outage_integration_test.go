package syncer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// outage is how long the broker API server stays down.
const outage = 30 * time.Second

// endpointModel is what the test has made: cluster -> name -> endpoint.
type endpointModel map[string]map[string]*submv1.Endpoint

// expectations renders what every side should hold for the model.
func (m endpointModel) expectations(f fleet) []expectation {
	line := func(e *submv1.Endpoint) string {
		return fmt.Sprintf("host=%s ip=%s subnets=%s", e.Spec.Hostname, e.Spec.PrivateIP, e.Spec.Subnets[0])
	}
	var broker []string
	local := map[string][]string{}
	for cluster, eps := range m {
		for name, e := range eps {
			brokerName := name + "." + componentNS + "." + cluster
			broker = append(broker, fmt.Sprintf("%s/%s cluster=%s %s", brokerNS, brokerName, cluster, line(e)))
			for other := range m {
				if other == cluster {
					local[other] = append(local[other], fmt.Sprintf("%s/%s %s", componentNS, name, line(e)))
				} else {
					local[other] = append(local[other], fmt.Sprintf("%s/%s cluster=%s copy %s", componentNS, brokerName, cluster, line(e)))
				}
			}
		}
	}
	return []expectation{
		{f.broker, endpointsGVR, brokerNS, describeEndpoint, broker},
		{f.c1, endpointsGVR, componentNS, describeEndpoint, local["cluster1"]},
		{f.c2, endpointsGVR, componentNS, describeEndpoint, local["cluster2"]},
	}
}

func (m endpointModel) clone() endpointModel {
	out := endpointModel{}
	for cluster, eps := range m {
		out[cluster] = map[string]*submv1.Endpoint{}
		for name, e := range eps {
			out[cluster][name] = e.DeepCopy()
		}
	}
	return out
}

// TestBrokerOutage stops the broker API server for 30 s while Endpoints change in
// both clusters (etcd keeps the broker's data):
//
//	cluster1 --- broker (stopped 30 s) --- cluster2
//
// Meanwhile the syncers keep running, notice that the broker is unreachable, and
// keep every local copy as it was, restoring copies someone deletes or edits
// meanwhile from their last view of the broker; cluster2's syncer restarts in the middle of it
// and waits for the broker without touching the copies. When the broker is back every side converges
// to exactly the objects that exist, with their latest specs: nothing lost,
// nothing duplicated.
func TestBrokerOutage(t *testing.T) {
	f := startFleet(t)
	syncers := []*running{
		startSyncer(t, f, f.c1, syncer.Config[*submv1.Endpoint]{}),
		startSyncer(t, f, f.c2, syncer.Config[*submv1.Endpoint]{}),
	}
	planes := map[string]*controlplane.Plane{"cluster1": f.c1, "cluster2": f.c2}
	model := endpointModel{"cluster1": {}, "cluster2": {}}
	add := func(cluster, name, host, ip, subnet string) {
		e := endpoint(cluster, name, host, ip, subnet)
		create(t, planes[cluster].Client, e)
		model[cluster][name] = e
	}
	change := func(cluster, name, host string) {
		update(t, planes[cluster].Client, componentNS, name, func(e *submv1.Endpoint) { e.Spec.Hostname = host })
		model[cluster][name].Spec.Hostname = host
	}
	drop := func(cluster, name string) {
		remove(t, planes[cluster].Client, model[cluster][name])
		delete(model[cluster], name)
	}

	add("cluster1", "a", "gw-a", "192.0.2.11", "10.1.0.0/16")
	add("cluster1", "b", "gw-b", "192.0.2.12", "10.1.0.0/16")
	add("cluster1", "c", "gw-c", "192.0.2.13", "10.1.0.0/16")
	add("cluster2", "x", "gw-x", "192.0.2.21", "10.2.0.0/16")
	add("cluster2", "y", "gw-y", "192.0.2.22", "10.2.0.0/16")
	eventually(t, model.expectations(f)...)
	before := model.clone()

	if err := f.broker.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := f.broker.StartAPIServer(); err != nil {
				t.Error(err)
			}
		}
	})
	if _, err := f.broker.Kube.CoreV1().Namespaces().Get(context.Background(), brokerNS, metav1.GetOptions{}); err == nil {
		t.Fatal("the broker still answers after StopAPIServer")
	}

	// First round of changes, right after the broker went away.
	add("cluster1", "d", "gw-d", "192.0.2.14", "10.1.0.0/16")
	change("cluster1", "a", "gw-a2")
	drop("cluster1", "b")
	add("cluster2", "z", "gw-z", "192.0.2.23", "10.2.0.0/16")
	change("cluster2", "x", "gw-x2")
	drop("cluster2", "y")

	// Both syncers notice that the broker does not answer.
	for _, r := range syncers {
		err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, outage, true,
			func(context.Context) (bool, error) {
				return sumCounter(t, r.metrics.BrokerReachable, nil) == 0, nil
			})
		if err != nil {
			t.Errorf("the syncer in %s does not report the broker unreachable: %v", r.name, err)
		}
	}

	// Someone deletes one copy in cluster2 and edits another: with the broker
	// away, the syncer's last view of it is the truth, so it restores both.
	wantCopies := map[string][]string{}
	for _, e := range before.expectations(f)[1:] {
		for _, line := range e.want {
			if isCopy(line) {
				wantCopies[e.plane.Name] = append(wantCopies[e.plane.Name], line)
			}
		}
		slices.Sort(wantCopies[e.plane.Name])
	}
	remove(t, f.c2.Client, &submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: componentNS, Name: "c.submariner-operator.cluster1"}})
	update(t, f.c2.Client, componentNS, "a.submariner-operator.cluster1", func(e *submv1.Endpoint) { e.Spec.Hostname = "forged" })
	waitCopies(t, f.c2, wantCopies["cluster2"])

	// cluster2's syncer restarts while the broker is away: the new one cannot
	// list the broker, so it must wait, and keep every copy.
	syncers[1].stop(t)
	syncers[1] = launchSyncer(t, f, f.c2, syncer.Config[*submv1.Endpoint]{})

	// Second round halfway through, after the syncers have failed and backed off:
	// a second update of the same object, an update of an object created during
	// the outage, a delete, and a re-creation under a deleted name.
	sleepUntil(t, down.Add(outage/2))
	change("cluster1", "a", "gw-a3")
	change("cluster1", "d", "gw-d2")
	drop("cluster1", "c")
	add("cluster2", "y", "gw-y2", "192.0.2.24", "10.2.0.0/16")

	sleepUntil(t, down.Add(outage))
	// The copies are as they were before the outage, in both clusters: nothing
	// is deleted because the broker cannot be reached.
	for _, p := range []*controlplane.Plane{f.c1, f.c2} {
		if got := copies(t, p); !slices.Equal(got, wantCopies[p.Name]) {
			t.Errorf("copies in %s after %v without the broker:\n got %q\nwant %q", p.Name, outage, got, wantCopies[p.Name])
		}
	}
	for _, r := range syncers {
		select {
		case err := <-r.done:
			t.Fatalf("the syncer in %s stopped during the outage: %v", r.name, err)
		default:
		}
	}
	if syncers[1].syncer.HasSynced() {
		t.Error("the syncer started during the outage says it has synced without ever reaching the broker")
	}
	failed := 0
	for _, r := range syncers {
		failed += int(sumCounter(t, r.metrics.Operations, map[string]string{"result": "error"}))
	}

	if err := f.broker.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	up := time.Now()
	eventually(t, model.expectations(f)...)
	t.Logf("broker down %v; %d failed writes during the outage; every side converged %v after the broker came back",
		up.Sub(down).Round(time.Second), failed, time.Since(up).Round(100*time.Millisecond))
	syncers[1].waitSynced(t)
	for _, r := range syncers {
		if got := sumCounter(t, r.metrics.BrokerReachable, nil); got != 1 {
			t.Errorf("the syncer in %s reports broker_reachable %v after convergence, want 1", r.name, got)
		}
	}
}

func isCopy(line string) bool { return slices.Contains(strings.Fields(line), "copy") }

// copies renders the copies among the Endpoints in the component namespace of p.
func copies(t *testing.T, p *controlplane.Plane) []string {
	t.Helper()
	got, err := render(context.Background(), p, endpointsGVR, componentNS, describeEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(got, "\n") {
		if isCopy(line) {
			out = append(out, line)
		}
	}
	return out
}

// waitCopies waits until the copies in p are want.
func waitCopies(t *testing.T, p *controlplane.Plane, want []string) {
	t.Helper()
	var got []string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, convergeTimeout, true,
		func(context.Context) (bool, error) {
			got = copies(t, p)
			return slices.Equal(got, want), nil
		})
	if err != nil {
		t.Fatalf("copies in %s: %v\n got %q\nwant %q", p.Name, err, got, want)
	}
}

// sleepUntil waits until the wall clock reaches deadline: the outage lasts a
// fixed time by design.
func sleepUntil(t *testing.T, deadline time.Time) {
	t.Helper()
	if d := time.Until(deadline); d > 0 {
		<-time.After(d)
	}
}

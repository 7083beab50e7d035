package sandbox

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr/funcr"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/sandbox/nodeagent"
)

// agentLogVerbosity is the node agents' log verbosity in their log files.
const agentLogVerbosity = 2

// startNodeAgent runs the node agent of n, supervised, logging to
// logs/<node>-agent.log.
func (s *Sandbox) startNodeAgent(c Cluster, n Node) error {
	creds := s.creds[c.Name]
	var nc *nodeCredentials
	for i := range creds.Nodes {
		if creds.Nodes[i].Node.Name == n.Name {
			nc = &creds.Nodes[i]
		}
	}
	if nc == nil {
		return fmt.Errorf("no credentials for node %s", n.Name)
	}
	serving, err := nc.Serving.TLS()
	if err != nil {
		return fmt.Errorf("loading the kubelet serving certificate of %s: %w", n.Name, err)
	}
	name := n.Name + "-agent"
	f, err := os.OpenFile(s.Layout.Log(name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the log of %s: %w", name, err)
	}
	s.mu.Lock()
	s.logs = append(s.logs, f)
	s.mu.Unlock()
	var mu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(f, time.Now().Format(time.RFC3339Nano), prefix, args)
	}, funcr.Options{Verbosity: agentLogVerbosity})

	labels := map[string]string{}
	if n.Gateway {
		labels[submv1.GatewayLabel] = "true"
	}
	cfg := nodeagent.Config{
		NodeName:      n.Name,
		NodeIP:        n.IP,
		PodCIDR:       n.PodCIDR,
		ClusterCIDR:   c.PodCIDR,
		Labels:        labels,
		NetNS:         n.NetNS,
		Kube:          RESTConfig(c.APIServer(), creds.CA.CertPEM, nc.Client),
		ServingCert:   serving,
		ClientCAs:     creds.CA.Pool(),
		KubeletPort:   KubeletPort,
		ClusterDNS:    c.DNSServiceIP(),
		ClusterDomain: ClusterDomain,
		Catalog:       nodeagent.DefaultCatalog(s.opts.BinDir),
		StateDir:      s.Layout.AgentState(n),
		Log:           log,
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", cfg.StateDir, err)
	}
	return s.sup.Go(name, func(ctx context.Context) error { return nodeagent.Run(ctx, cfg) })
}

// cleanupNodeAgent removes what a (possibly crashed) node agent left.
func cleanupNodeAgent(ctx context.Context, stateDir string) error {
	return nodeagent.Cleanup(ctx, stateDir)
}

// Command coredns is CoreDNS v1.15.0 with a curated set of stock plugins and our
// lighthouse plugin, built the documented out-of-tree way: set the directive list,
// blank-import exactly the plugins it names, and hand over to coremain.
//
// The same binary serves both deployments: the lighthouse CoreDNS that the cluster
// CoreDNS forwards clusterset.local to, and a cluster CoreDNS with lighthouse in its
// own chain (README.md has the Corefile stanzas for both). The command line is
// CoreDNS's own (-conf, -dns.port, -plugins, -version, -quiet, -pidfile, -log-format).
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The stock plugins named in directives, and nothing else: importing
	// core/plugin would link every plugin CoreDNS ships. Each import registers its
	// plugin with caddy; the directive list decides whether, and where in the
	// chain, a Corefile may use it. README.md says why each one is here.
	_ "github.com/coredns/coredns/plugin/acl"
	_ "github.com/coredns/coredns/plugin/any"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/bufsize"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/cancel"
	_ "github.com/coredns/coredns/plugin/chaos"
	_ "github.com/coredns/coredns/plugin/debug"
	_ "github.com/coredns/coredns/plugin/dnstap"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metadata"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/pprof"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/transfer"
	_ "github.com/coredns/coredns/plugin/whoami"

	// Our plugin: clusterset.local from ServiceImports and EndpointSlices.
	_ "github.com/submariner-go/submariner/plugin/lighthouse"
)

// directives is the plugin chain, in execution order: a query visits the plugins
// of its server block in this order, whatever order the Corefile lists them in.
// The order is CoreDNS's own plugin.cfg order for v1.15.0 restricted to our set,
// with lighthouse right after kubernetes, so that `kubernetes ... { fallthrough }`
// hands the names it does not own to lighthouse, and lighthouse's own fallthrough
// hands on to file, loop and forward.
//
// To add a plugin: blank-import its package above and insert its directive here at
// its plugin.cfg position. TestDirectives keeps the imports, this list and
// CoreDNS's order in step.
var directives = []string{
	"metadata",    // lets plugins publish per-query metadata for log and template
	"cancel",      // a per-query deadline for plugins that wait (kubernetes, forward)
	"reload",      // reloads the Corefile when its ConfigMap changes
	"bufsize",     // caps the EDNS0 UDP size to avoid fragmentation
	"bind",        // listens on chosen addresses (pod IP, loopback in tests)
	"debug",       // no panic recovery, debug logs: for troubleshooting only
	"ready",       // :8181/ready once every plugin that can say so is ready
	"health",      // :8080/health liveness
	"pprof",       // profiles for the DNS benchmarks
	"prometheus",  // :9153/metrics (package plugin/metrics)
	"errors",      // logs the errors plugins return
	"log",         // query log
	"dnstap",      // linked by forward anyway; structured query capture
	"any",         // answers ANY with HINFO (RFC 8482), no amplification
	"chaos",       // version.bind and friends in class CH
	"loadbalance", // shuffles A/AAAA answers
	"rewrite",     // maps custom domains onto cluster.local / clusterset.local
	"acl",         // restricts who may query (a lighthouse server answers only its cluster)
	"cache",       // answer cache of the cluster DNS
	"template",    // synthesized answers (search-path shortcuts, tests)
	"transfer",    // linked by kubernetes and file anyway; zone transfers
	"hosts",       // static names from a hosts file or inline
	"kubernetes",  // cluster.local from the local API server
	"lighthouse",  // ours: clusterset.local from ServiceImports and EndpointSlices
	"file",        // authoritative zones from zone files
	"loop",        // detects forwarding loops at startup
	"forward",     // forwards to other resolvers (the cluster DNS to the lighthouse DNS)
	"whoami",      // answers with the client's address; CoreDNS's default server block
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintf(os.Stderr, "coredns: setting the plugin chain: %v\n", err)
		os.Exit(1)
	}
	coremain.Run()
}

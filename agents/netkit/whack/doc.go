// Package whack drives Libreswan's pluto through the whack CLI, the way Submariner's
// libreswan cable driver does: connections are data (Connection, built per subnet
// pair from a Tunnel by Connections, in bidirectional, server or client mode chosen
// by ChooseMode), every whack invocation is a pure argument builder (Connection.Args,
// RouteArgs, InitiateArgs, ...), Client runs them through an injected Runner with a
// timeout and retries, and parsers turn --status, --showstates and --trafficstatus
// output (and pluto's log lines about kernel refusals) into values. Pluto starts and
// supervises a pluto with its own run directory, NSS database and secrets file,
// optionally in a network namespace. See README.md.
package whack

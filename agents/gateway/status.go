package gateway

import (
	"github.com/submariner-go/submariner/agents/gateway/cable"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// MergeHealth combines the driver's view of a tunnel with the health checker's, as
// Submariner does: a tunnel the driver calls connected is in error when the probes
// through it go unanswered, and one the driver calls in error is connected when
// they are answered (the probes are the ground truth). Otherwise the driver's view
// stands. The round-trip statistics are the health checker's.
func MergeHealth(d cable.Status, h HealthResult, probed bool) (submv1.ConnectionStatus, string, *submv1.LatencyRTT) {
	if !probed {
		return d.Status, d.Message, nil
	}
	switch {
	case d.Status == submv1.Connected && h.Status == submv1.ConnError:
		return submv1.ConnError, h.Message, h.RTT
	case d.Status == submv1.ConnError && h.Status == submv1.Connected:
		return submv1.Connected, "", h.RTT
	}
	return d.Status, d.Message, h.RTT
}

// StatusInput is everything a Gateway's status is made of.
type StatusInput struct {
	Version  string
	HAStatus submv1.HAStatus
	// LocalEndpoint is the Endpoint this gateway publishes; nil while passive.
	LocalEndpoint *submv1.EndpointSpec
	// Failure says why the gateway cannot work, "" when it can.
	Failure string
	// Connections are the tunnels as the engine reports them (active only).
	Connections []DriverConnection
	// Health returns the health checker's result for a remote cable name, and
	// whether it probes it.
	Health func(cableName string) (HealthResult, bool)
}

// BuildStatus returns the Gateway status for in. It does no I/O. Connections keep
// the engine's order (by remote cluster ID).
func BuildStatus(in StatusInput) submv1.GatewayStatus {
	st := submv1.GatewayStatus{
		Version:       in.Version,
		HAStatus:      in.HAStatus,
		LocalEndpoint: in.LocalEndpoint,
		StatusFailure: in.Failure,
	}
	for _, c := range in.Connections {
		conn := submv1.Connection{
			Status:        c.Status.Status,
			StatusMessage: c.Status.Message,
			Endpoint:      c.Spec,
			UsingNAT:      c.Status.UsingNAT,
		}
		if c.Status.UsingIP.IsValid() {
			conn.UsingIP = c.Status.UsingIP.String()
		}
		if c.Tunnel != nil && in.Health != nil {
			h, probed := in.Health(c.Spec.CableName)
			conn.Status, conn.StatusMessage, conn.LatencyRTT = MergeHealth(c.Status, h, probed)
		}
		if conn.Status == "" {
			conn.Status = submv1.ConnNone
		}
		st.Connections = append(st.Connections, conn)
	}
	return st
}

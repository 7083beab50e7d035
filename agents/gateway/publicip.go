package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// PublicIPMethod is one way of finding the gateway's public IP.
type PublicIPMethod struct {
	// Kind is ipv4, dns or api.
	Kind string
	// Value is the address, the DNS name or the URL.
	Value string
}

// The public IP methods.
const (
	// PublicIPv4 gives the address literally: ipv4:203.0.113.10.
	PublicIPv4 = "ipv4"
	// PublicDNS resolves a name, taking the lowest IPv4 address: dns:gw.example.org.
	PublicDNS = "dns"
	// PublicAPI fetches a URL (https:// unless given) and takes the first IPv4
	// address in the body: api:ifconfig.example.org/ip.
	PublicAPI = "api"
)

// publicAPITimeout bounds one api: request.
const publicAPITimeout = 30 * time.Second

// ParsePublicIPMethods parses a comma-separated list of methods
// ("ipv4:203.0.113.10,dns:gw.example.org"). Empty gives none. Errors name the
// method and say how to write it.
func ParsePublicIPMethods(s string) ([]PublicIPMethod, error) {
	var out []PublicIPMethod
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kind, value, ok := strings.Cut(part, ":")
		if !ok || value == "" {
			return nil, fmt.Errorf("public IP method %q is not method:value: use ipv4:ADDRESS, dns:NAME or api:URL", part)
		}
		switch kind {
		case PublicIPv4:
			a, err := netip.ParseAddr(value)
			if err != nil || !a.Is4() {
				return nil, fmt.Errorf("public IP method %q: %q is not an IPv4 address", part, value)
			}
		case PublicDNS, PublicAPI:
		default:
			return nil, fmt.Errorf("public IP method %q: unknown method %q: use ipv4:ADDRESS, dns:NAME or api:URL", part, kind)
		}
		out = append(out, PublicIPMethod{Kind: kind, Value: value})
	}
	return out, nil
}

// Dynamic reports whether a method's answer can change over time.
func Dynamic(ms []PublicIPMethod) bool {
	return slices.ContainsFunc(ms, func(m PublicIPMethod) bool { return m.Kind != PublicIPv4 })
}

// PublicIPResolver resolves public IP methods.
type PublicIPResolver struct {
	// HTTP fetches api: URLs; nil uses a client with a 30 s timeout.
	HTTP *http.Client
	// DNS resolves dns: names; nil uses net.DefaultResolver.
	DNS *net.Resolver
}

var ipv4InText = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}\b`)

// Resolve tries the methods in order and returns the first address found, or an
// invalid address and nil when there are no methods. When every method fails, the
// error lists each failure.
func (r PublicIPResolver) Resolve(ctx context.Context, ms []PublicIPMethod) (netip.Addr, error) {
	var errs []error
	for _, m := range ms {
		a, err := r.resolve(ctx, m)
		if err == nil {
			return a, nil
		}
		errs = append(errs, fmt.Errorf("%s:%s: %w", m.Kind, m.Value, err))
	}
	if len(errs) == 0 {
		return netip.Addr{}, nil
	}
	return netip.Addr{}, fmt.Errorf("resolving the public IP: %w", errors.Join(errs...))
}

func (r PublicIPResolver) resolve(ctx context.Context, m PublicIPMethod) (netip.Addr, error) {
	switch m.Kind {
	case PublicIPv4:
		return netip.ParseAddr(m.Value)
	case PublicDNS:
		res := r.DNS
		if res == nil {
			res = net.DefaultResolver
		}
		addrs, err := res.LookupNetIP(ctx, "ip4", m.Value)
		if err != nil {
			return netip.Addr{}, err
		}
		var v4 []netip.Addr
		for _, a := range addrs {
			if a = a.Unmap(); a.Is4() {
				v4 = append(v4, a)
			}
		}
		if len(v4) == 0 {
			return netip.Addr{}, errors.New("the name has no IPv4 address")
		}
		slices.SortFunc(v4, netip.Addr.Compare)
		return v4[0], nil
	case PublicAPI:
		url := m.Value
		if !strings.Contains(url, "://") {
			url = "https://" + url
		}
		c := r.HTTP
		if c == nil {
			c = &http.Client{Timeout: publicAPITimeout}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return netip.Addr{}, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return netip.Addr{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return netip.Addr{}, err
		}
		if resp.StatusCode != http.StatusOK {
			return netip.Addr{}, fmt.Errorf("%s answered %s", url, resp.Status)
		}
		for _, s := range ipv4InText.FindAllString(string(body), -1) {
			if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
				return a, nil
			}
		}
		return netip.Addr{}, fmt.Errorf("%s answered no IPv4 address", url)
	}
	return netip.Addr{}, fmt.Errorf("unknown method %q", m.Kind)
}

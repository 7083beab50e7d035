package lighthouse

import "strings"

// nameKind tells the names of a lighthouse zone apart.
type nameKind uint8

const (
	kindApex       nameKind = iota // ZONE
	kindDNSVersion                 // dns-version.ZONE
	kindSvc                        // svc.ZONE
	kindNamespace                  // NS.svc.ZONE
	kindService                    // [PREFIX.]NAME.NS.svc.ZONE
)

// dnsVersionLabel names the TXT record with the schema version.
const dnsVersionLabel = "dns-version"

// The longest names the grammar knows put three labels in front of NAME.NS.svc:
// _PORT._PROTO.CLUSTER (with cluster-specific names).
const maxPrefixLabels = 3

// name is a query name split along the grammar of the MCS DNS specification. The
// forms of a service name, by the labels in front of NAME.NS.svc.ZONE:
//
//  1. none                  the service                      NAME.NS.svc.ZONE
//  2. _PORT._PROTO          SRV of a named port               _http._tcp.NAME.NS.svc.ZONE
//  3. _PROTO                empty non-terminal of form 2      _tcp.NAME.NS.svc.ZONE
//  4. HOSTNAME.CLUSTER      one endpoint of a headless service web-0.cluster1.NAME.NS.svc.ZONE
//  5. CLUSTER               one cluster (cluster-specific-names; reserved otherwise)
//  6. _PORT._PROTO.CLUSTER  SRV of one cluster (cluster-specific-names)
//  7. _PROTO.CLUSTER        empty non-terminal of form 6 (cluster-specific-names)
//
// A label starting with "_" is a port or protocol; host names, cluster IDs and port
// names never start with one, so the forms cannot be confused.
type name struct {
	kind nameKind
	// namespace is set for kindNamespace and kindService.
	namespace string
	// service is NAME and key is "NAME.NS", the index key (kindService).
	service, key string
	// target is the offset of NAME in the query name: name[target:] is the service's
	// own name, the SRV target of a ClusterSetIP service.
	target int
	// port and proto are the labels without the "_" (forms 2, 3, 6, 7; port is
	// empty in 3 and 7).
	port, proto string
	// cluster is set in forms 4 to 7, hostname in form 4.
	cluster, hostname string
	// clusterAt is the offset of the CLUSTER label in forms 4 to 7: name[clusterAt:]
	// is the cluster's own name, the SRV target of form 5.
	clusterAt int
}

// parseName splits qname, a lower-case fully qualified name inside zone (a lower-case
// fully qualified zone name, "." for the root), along the grammar. It reports false
// for a name that cannot exist in the zone: other labels than the grammar's, empty
// labels, labels over 63 octets, escaped characters, too many labels.
func parseName(qname, zone string) (name, bool) {
	if !strings.HasSuffix(qname, zone) || strings.IndexByte(qname, '\\') >= 0 {
		return name{}, false
	}
	rest := qname[:len(qname)-len(zone)] // "" or "a.b.c." ("a.b.c" when zone is ".")
	if zone == "." {
		if rest == "" {
			return name{kind: kindApex}, true
		}
		rest += "."
	}
	if rest == "" {
		return name{kind: kindApex}, true
	}
	if rest[len(rest)-1] != '.' {
		return name{}, false // the zone matched in the middle of a label
	}
	rest = rest[:len(rest)-1]

	// Split into at most maxPrefixLabels+3 labels, from the right, without allocating.
	const maxLabels = maxPrefixLabels + 3
	var labels [maxLabels]string
	var starts [maxLabels]int
	n := 0
	for end := len(rest); ; {
		if n == maxLabels {
			return name{}, false
		}
		start := strings.LastIndexByte(rest[:end], '.') + 1
		label := rest[start:end]
		if label == "" || len(label) > 63 {
			return name{}, false
		}
		labels[n], starts[n] = label, start
		n++
		if start == 0 {
			break
		}
		end = start - 1
	}
	// labels[0] is the rightmost label.
	switch {
	case n == 1 && labels[0] == dnsVersionLabel:
		return name{kind: kindDNSVersion}, true
	case labels[0] != "svc":
		return name{}, false
	case n == 1:
		return name{kind: kindSvc}, true
	case n == 2:
		return name{kind: kindNamespace, namespace: labels[1]}, true
	}
	q := name{
		kind:      kindService,
		namespace: labels[1],
		service:   labels[2],
		key:       rest[starts[2] : starts[1]+len(labels[1])],
		target:    starts[2],
	}
	prefix := labels[3:n] // prefix[0] is the label right in front of NAME
	switch len(prefix) {
	case 0:
	case 1:
		if p, ok := underscored(prefix[0]); ok {
			q.proto = p // 3
		} else {
			q.cluster = prefix[0] // 5
		}
	case 2:
		p1, u1 := underscored(prefix[1])
		p0, u0 := underscored(prefix[0])
		switch {
		case u1 && u0:
			q.port, q.proto = p1, p0 // 2
		case !u1 && !u0:
			q.hostname, q.cluster = prefix[1], prefix[0] // 4
		case u1 && !u0:
			q.proto, q.cluster = p1, prefix[0] // 7
		default:
			return name{}, false
		}
	case 3:
		p2, u2 := underscored(prefix[2])
		p1, u1 := underscored(prefix[1])
		if _, u0 := underscored(prefix[0]); !u2 || !u1 || u0 {
			return name{}, false
		}
		q.port, q.proto, q.cluster = p2, p1, prefix[0] // 6
	}
	if q.cluster != "" {
		q.clusterAt = starts[3]
	}
	return q, true
}

// underscored returns label without its leading "_", and whether it had one (with
// something after it).
func underscored(label string) (string, bool) {
	if len(label) > 1 && label[0] == '_' {
		return label[1:], true
	}
	return label, false
}

// lowerASCII returns s with the ASCII letters in lower case. Unlike strings.ToLower
// it keeps every other byte, so offsets into the result are offsets into s; and it
// does not allocate when s has no upper-case letter (the usual query).
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

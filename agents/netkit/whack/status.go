package whack

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Traffic is one established Child SA as `whack --trafficstatus` lists it.
type Traffic struct {
	// Serial is the state's number (#N).
	Serial int
	// Connection is the connection's name.
	Connection string
	// Instance is the instance suffix of a connection accepting any peer ("[1]
	// 192.0.2.9"), or "".
	Instance string
	// Type is the SA's protocol (ESP).
	Type string
	// AddTime is when the SA was installed.
	AddTime time.Time
	// InBytes and OutBytes count the traffic through the SA.
	InBytes, OutBytes uint64
	// ID is the peer's IKE identity.
	ID string
}

// State is one IKE or Child SA state as `whack --showstates` (and --status) list it.
type State struct {
	Serial     int
	Connection string
	// Instance is the instance suffix ("[1] 192.0.2.9"), or "".
	Instance string
	// Port is the peer's IKE port, 0 if not shown.
	Port int
	// Name is pluto's state name (STATE_V2_ESTABLISHED_IKE_SA).
	Name string
	// Description is the state's description (established IKE SA).
	Description string
	// Details is the rest of the line (timers, flags).
	Details string
}

// IKEEstablished reports whether the state is an established IKE SA.
func (s State) IKEEstablished() bool {
	switch s.Name {
	case "STATE_V2_ESTABLISHED_IKE_SA", "STATE_MAIN_I4", "STATE_MAIN_R3", "STATE_AGGR_I2", "STATE_AGGR_R2":
		return true
	}
	return false
}

// ChildEstablished reports whether the state is an established Child (IPsec) SA.
func (s State) ChildEstablished() bool {
	switch s.Name {
	case "STATE_V2_ESTABLISHED_CHILD_SA", "STATE_QUICK_I2", "STATE_QUICK_R2":
		return true
	}
	return false
}

// ConnectionStatus is one connection as `whack --status` describes it.
type ConnectionStatus struct {
	Name string
	// Instance is the instance suffix, or "".
	Instance string
	// Spec is the connection's shape: left subnet===left host[id]...right host[id]===right subnet.
	Spec string
	// Routing is its routing state: unrouted, prospective erouted, erouted, ...
	Routing string
	// Policy is its policy (IKEv2+PSK+ENCRYPT+TUNNEL+UP).
	Policy string
	// OurID and TheirID are the IKE identities.
	OurID, TheirID string
	// Encaps is whether ESP goes in UDP (yes, no, auto).
	Encaps string
	// DPDAction and DPDDelay are the dead-peer detection settings.
	DPDAction string
	DPDDelay  time.Duration
	// NewestIKESA and NewestIPsecSA are the serials of its newest SAs (0: none).
	NewestIKESA, NewestIPsecSA int
}

// Status is what `whack --status` reports.
type Status struct {
	Connections []ConnectionStatus
	States      []State
	// IKESAs and IPsecSAs are the totals pluto counts.
	IKESAs, IPsecSAs int
}

// Connection returns the status of the connection called name.
func (s *Status) Connection(name string) (ConnectionStatus, bool) {
	for _, c := range s.Connections {
		if c.Name == name {
			return c, true
		}
	}
	return ConnectionStatus{}, false
}

// IKEEstablished reports whether the connection called name has an established IKE SA.
func (s *Status) IKEEstablished(name string) bool {
	for _, st := range s.States {
		if st.Connection == name && st.IKEEstablished() {
			return true
		}
	}
	return false
}

// ChildEstablished reports whether the connection called name has an established
// Child SA.
func (s *Status) ChildEstablished(name string) bool {
	for _, st := range s.States {
		if st.Connection == name && st.ChildEstablished() {
			return true
		}
	}
	return false
}

// stripCode removes whack's three-digit status code and the space after it.
func stripCode(line string) string {
	if len(line) >= 4 && line[3] == ' ' && isDigits(line[:3]) {
		return line[4:]
	}
	return line
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

var (
	// #2: "name"[1] 192.0.2.9, type=ESP, ...
	trafficRE = regexp.MustCompile(`^#(\d+): "([^"]+)"((?:\[\d+\])?[^,]*), (.*)$`)
	// #1: "name":4500 STATE_... (description); details
	stateRE = regexp.MustCompile(`^#(\d+): "([^"]+)"(\S*(?: \S+)?) (STATE_[A-Z0-9_]+) \(([^)]*)\);? ?(.*)$`)
	// "name"[1] ...: rest
	connRE   = regexp.MustCompile(`^"([^"]+)"((?:\[\d+\])?(?: [^:]*)?):\s+(.*)$`)
	portRE   = regexp.MustCompile(`:(\d+)$`)
	totalsRE = regexp.MustCompile(`^(IKE|IPsec) SAs: total\((\d+)\)`)
)

// ParseTrafficStatus parses `whack --trafficstatus` output.
func ParseTrafficStatus(out []byte) ([]Traffic, error) {
	var ts []Traffic
	sc := bufio.NewScanner(bytes.NewReader(out))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(stripCode(sc.Text()))
		if line == "" {
			continue
		}
		m := trafficRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("parsing --trafficstatus line %d %q: not a '#N: \"name\", key=value, ...' line", n, line)
		}
		t := Traffic{Connection: m[2], Instance: strings.TrimSpace(m[3])}
		t.Serial, _ = strconv.Atoi(m[1])
		for _, kv := range splitFields(m[4]) {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, "'")
			var err error
			switch k {
			case "type":
				t.Type = v
			case "add_time":
				var sec int64
				if sec, err = strconv.ParseInt(v, 10, 64); err == nil {
					t.AddTime = time.Unix(sec, 0).UTC()
				}
			case "inBytes":
				t.InBytes, err = strconv.ParseUint(v, 10, 64)
			case "outBytes":
				t.OutBytes, err = strconv.ParseUint(v, 10, 64)
			case "id":
				t.ID = v
			}
			if err != nil {
				return nil, fmt.Errorf("parsing --trafficstatus line %d: field %s=%q: %w", n, k, v, err)
			}
		}
		ts = append(ts, t)
	}
	return ts, sc.Err()
}

// splitFields splits "a=1, b='x, y', c=2" at the commas outside single quotes.
func splitFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			quoted = !quoted
			cur.WriteByte(c)
		case c == ',' && !quoted:
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		out = append(out, strings.TrimSpace(cur.String()))
	}
	return out
}

// ParseShowStates parses `whack --showstates` output.
func ParseShowStates(out []byte) ([]State, error) {
	var states []State
	sc := bufio.NewScanner(bytes.NewReader(out))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(stripCode(sc.Text()))
		if line == "" {
			continue
		}
		st, ok := parseState(line)
		if !ok {
			return nil, fmt.Errorf("parsing --showstates line %d %q: not a '#N: \"name\" STATE_...' line", n, line)
		}
		states = append(states, st)
	}
	return states, sc.Err()
}

func parseState(line string) (State, bool) {
	m := stateRE.FindStringSubmatch(line)
	if m == nil {
		return State{}, false
	}
	st := State{Connection: m[2], Name: m[4], Description: m[5], Details: strings.TrimSpace(m[6])}
	st.Serial, _ = strconv.Atoi(m[1])
	where := strings.TrimSpace(m[3])
	if p := portRE.FindStringSubmatch(where); p != nil {
		st.Port, _ = strconv.Atoi(p[1])
		where = strings.TrimSuffix(where, p[0])
	}
	st.Instance = strings.TrimSpace(where)
	return st, true
}

// ParseStatus parses `whack --status` output: the connection list, the states and
// the SA totals. Lines it does not need (interfaces, algorithms, options) are skipped.
func ParseStatus(out []byte) (*Status, error) {
	s := &Status{}
	index := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(stripCode(sc.Text()))
		switch {
		case strings.HasPrefix(line, "#"):
			st, ok := parseState(line)
			if !ok {
				return nil, fmt.Errorf("parsing --status line %d %q: a state line pluto 4.10 would not print", n, line)
			}
			s.States = append(s.States, st)
		case strings.HasPrefix(line, `"`):
			m := connRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			key := m[1] + m[2]
			i, ok := index[key]
			if !ok {
				i = len(s.Connections)
				index[key] = i
				s.Connections = append(s.Connections, ConnectionStatus{Name: m[1], Instance: strings.TrimSpace(m[2])})
			}
			if err := s.Connections[i].parse(m[3]); err != nil {
				return nil, fmt.Errorf("parsing --status line %d: connection %s: %w", n, m[1], err)
			}
		default:
			if m := totalsRE.FindStringSubmatch(line); m != nil {
				v, _ := strconv.Atoi(m[2])
				if m[1] == "IKE" {
					s.IKESAs = v
				} else {
					s.IPsecSAs = v
				}
			}
		}
	}
	return s, sc.Err()
}

// parse reads one of a connection's status lines.
func (c *ConnectionStatus) parse(rest string) error {
	if c.Spec == "" && strings.Contains(rest, "...") {
		parts := strings.Split(rest, ";")
		c.Spec = strings.TrimSpace(parts[0])
		if len(parts) > 1 {
			c.Routing = strings.TrimSpace(parts[1])
		}
		return nil
	}
	for _, f := range strings.Split(rest, ";") {
		f = strings.TrimSpace(f)
		var err error
		switch {
		case strings.HasPrefix(f, "policy: "):
			c.Policy = strings.TrimPrefix(f, "policy: ")
		case strings.HasPrefix(f, "our id="):
			c.OurID = strings.TrimPrefix(f, "our id=")
		case strings.HasPrefix(f, "their id="):
			c.TheirID = strings.TrimPrefix(f, "their id=")
		case strings.HasPrefix(f, "nat-traversal: encaps:"):
			c.Encaps = strings.TrimPrefix(f, "nat-traversal: encaps:")
		case strings.HasPrefix(f, "dpdaction:"):
			c.DPDAction = strings.TrimPrefix(f, "dpdaction:")
		case strings.HasPrefix(f, "dpddelay:"):
			c.DPDDelay, err = time.ParseDuration(strings.TrimPrefix(f, "dpddelay:"))
		case strings.HasPrefix(f, "newest IKE SA: #"):
			c.NewestIKESA, err = strconv.Atoi(strings.TrimPrefix(f, "newest IKE SA: #"))
		case strings.HasPrefix(f, "newest IPsec SA: #"):
			c.NewestIPsecSA, err = strconv.Atoi(strings.TrimPrefix(f, "newest IPsec SA: #"))
		}
		if err != nil {
			return fmt.Errorf("field %q: %w", f, err)
		}
	}
	return nil
}

// Summary is a tunnel's state as Submariner reports it: connected when any of its
// connections has an established Child SA, with the traffic summed over them.
type Summary struct {
	Connected         bool
	SAs               int
	InBytes, OutBytes uint64
}

// Summarize sums the traffic of the named connections.
func Summarize(traffic []Traffic, names ...string) Summary {
	var s Summary
	for _, t := range traffic {
		for _, n := range names {
			if t.Connection == n {
				s.Connected = true
				s.SAs++
				s.InBytes += t.InBytes
				s.OutBytes += t.OutBytes
			}
		}
	}
	return s
}

// KernelError is the kernel refusing something pluto asked of it, as pluto logs it.
type KernelError struct {
	Connection string
	Serial     int
	// Operation is what pluto asked ("Add SA esp.87d8bc20@192.0.2.1").
	Operation string
	// Reason is the kernel's answer ("Function not implemented").
	Reason string
	// Errno is the error number (38 is ENOSYS).
	Errno int
}

func (e KernelError) String() string {
	return fmt.Sprintf("connection %s #%d: the kernel refused %s: %s (errno %d)", e.Connection, e.Serial, e.Operation, e.Reason, e.Errno)
}

var kernelErrorRE = regexp.MustCompile(`ERROR: "([^"]+)"(?:\[\d+\][^#]*)? #(\d+): netlink response for (.+): ([^:]+) \(errno (\d+)\)\s*$`)

// ParseKernelError recognises pluto's log line for a netlink request the kernel
// refused, such as installing a Child SA on a kernel without ESP:
//
//	ERROR: "c" #2: netlink response for Add SA esp.87d8bc20@192.0.2.1: Function not implemented (errno 38)
func ParseKernelError(line string) (KernelError, bool) {
	m := kernelErrorRE.FindStringSubmatch(line)
	if m == nil {
		return KernelError{}, false
	}
	e := KernelError{Connection: m[1], Operation: m[3], Reason: m[4]}
	e.Serial, _ = strconv.Atoi(m[2])
	e.Errno, _ = strconv.Atoi(m[5])
	return e, true
}

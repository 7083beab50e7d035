package iptables

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// dump is the parsed output of iptables-save: per table, its chains in the order
// printed and their rules as tokens.
type dump map[Table]*tableDump

type tableDump struct {
	chains []Chain
	has    map[Chain]bool
	rules  map[Chain][][]string
}

// parseSave parses iptables-save output (counters and comments are ignored).
func parseSave(data []byte) (dump, error) {
	d := dump{}
	var cur *tableDump
	var curName Table
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			curName = Table(line[1:])
			cur = &tableDump{has: map[Chain]bool{}, rules: map[Chain][][]string{}}
			d[curName] = cur
		case line == "COMMIT":
			cur = nil
		case cur == nil:
			return nil, fmt.Errorf("iptables-save line %d (%q) is outside a table", n, line)
		case strings.HasPrefix(line, ":"):
			fields := strings.Fields(line[1:])
			if len(fields) == 0 {
				return nil, fmt.Errorf("iptables-save line %d: chain declaration without a name", n)
			}
			c := Chain(fields[0])
			if !cur.has[c] {
				cur.has[c] = true
				cur.chains = append(cur.chains, c)
			}
		case strings.HasPrefix(line, "-A "):
			toks, err := tokenize(line)
			if err != nil {
				return nil, fmt.Errorf("iptables-save line %d: %w", n, err)
			}
			if len(toks) < 2 {
				return nil, fmt.Errorf("iptables-save line %d: rule without a chain", n)
			}
			c := Chain(toks[1])
			cur.rules[c] = append(cur.rules[c], toks[2:])
		default:
			return nil, fmt.Errorf("iptables-save line %d (%q) is not a table, chain, rule or COMMIT", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading iptables-save output: %w", err)
	}
	return d, nil
}

// tokenize splits a restore or save line into arguments, honouring double quotes
// (with backslash escapes inside them) as iptables-restore does.
func tokenize(line string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	inTok, inQuote := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			inQuote = !inQuote
			inTok = true
		case !inQuote && (c == ' ' || c == '\t'):
			if inTok {
				toks = append(toks, cur.String())
				cur.Reset()
				inTok = false
			}
		default:
			cur.WriteByte(c)
			inTok = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inTok {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

// normalize rewrites rule tokens into the form iptables-save prints, for the few
// differences that matter when recognising our jump rules: the implicit "-m tcp" or
// "-m udp" after "-p tcp|udp", and host addresses without a prefix length.
func normalize(args []string) []string {
	out := make([]string, 0, len(args)+2)
	proto := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case (a == "-p" || a == "--protocol") && i+1 < len(args):
			proto = args[i+1]
			out = append(out, "-p", proto)
			i++
			if i+2 < len(args) && args[i+1] == "-m" && args[i+2] == proto {
				i += 2
			}
			if needsImplicitMatch(proto) && i+1 < len(args) && isPortOption(args[i+1]) {
				out = append(out, "-m", proto)
			}
		case (a == "-s" || a == "--source") && i+1 < len(args):
			out = append(out, "-s", hostPrefix(args[i+1]))
			i++
		case (a == "-d" || a == "--destination") && i+1 < len(args):
			out = append(out, "-d", hostPrefix(args[i+1]))
			i++
		default:
			out = append(out, a)
		}
	}
	return out
}

func needsImplicitMatch(proto string) bool {
	return proto == "tcp" || proto == "udp" || proto == "sctp"
}

func isPortOption(a string) bool {
	switch a {
	case "--dport", "--sport", "--destination-port", "--source-port", "--tcp-flags", "--syn":
		return true
	}
	return false
}

func hostPrefix(s string) string {
	if strings.Contains(s, "/") {
		return s
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()).String()
	}
	return s
}

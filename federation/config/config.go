package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/rendezvous-core/rendezvous/topology"
	"go.yaml.in/yaml/v3"
)

// Federation is a parsed and validated federation file.
type Federation struct {
	// File is the name the federation was parsed under ("" for Lab).
	File string
	// Deployment holds the regions (sites), nodes and allowed peers.
	Deployment topology.Deployment
	// Settings are the optional federation-wide settings.
	Settings Settings
}

// Settings are optional; an empty field means the component's own default.
type Settings struct {
	// Realm is the federation's Diameter realm: Origin-Realm of every HSS
	// (RFC 6733 §6.4), e.g. "rendezvous.example.net".
	Realm string
	// ClusterLabel is the memberlist cluster label; nodes with another
	// label are refused (DESIGN.md §4).
	ClusterLabel string
}

// Node returns the node called name, for `rendezvous serve --node NAME`.
func (f *Federation) Node(name string) (topology.Node, error) {
	if n, ok := f.Deployment.Node(name); ok {
		return n, nil
	}
	names := make([]string, 0, len(f.Deployment.Nodes))
	for _, n := range f.Deployment.Nodes {
		names = append(names, n.Name)
	}
	where := f.File
	if where == "" {
		where = "federation"
	}
	return topology.Node{}, fmt.Errorf("config: %s: no node %q (nodes: %s)", where, name, strings.Join(names, ", "))
}

// Error is one problem of a federation file, located by line and field.
type Error struct {
	File string
	// Line is 1-based; 0 when unknown.
	Line int
	// Field is the path of the offending value, e.g. "nodes[2].gtpc".
	Field string
	Msg   string
}

// Error returns "FILE:LINE: FIELD: MSG".
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// Load reads and parses the federation file at path.
func Load(path string) (*Federation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a federation file; name is used in errors. It returns every
// problem found as errors.Join of *Error, ordered by line.
func Parse(name string, data []byte) (*Federation, error) {
	d := &decoder{file: name, lines: map[string]int{}, bad: map[string]bool{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, d.syntaxError(err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, &Error{File: name, Line: 1, Field: "(file)", Msg: "empty federation file"}
	}
	f := &Federation{File: name}
	d.document(root.Content[0], f)

	// The model's own checks: overlapping pools, duplicate address:port,
	// slices, unknown regions, duplicate names. A field that already failed
	// to decode is not reported twice.
	for _, e := range unjoin(f.Deployment.Validate()) {
		var fe *topology.FieldError
		if !errors.As(e, &fe) {
			d.errs = append(d.errs, &Error{File: name, Field: "(federation)", Msg: e.Error()})
			continue
		}
		if d.related(fe.Field) {
			continue
		}
		d.errs = append(d.errs, &Error{File: name, Line: d.line(fe.Field), Field: fe.Field, Msg: fe.Msg})
	}
	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
		errs := make([]error, len(d.errs))
		for i, e := range d.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return f, nil
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// decoder walks the yaml.Node tree, recording the line of every field path
// so that later, model-level errors can point at the line too.
type decoder struct {
	file  string
	errs  []*Error
	lines map[string]int  // field path → line
	bad   map[string]bool // field paths that already have an error
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// syntaxError turns a YAML syntax error ("yaml: line 3: …") into an *Error.
func (d *decoder) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimPrefix(msg, m[0]+": ")
	}
	return &Error{File: d.file, Line: line, Field: "(syntax)", Msg: msg}
}

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	d.bad[field] = true
	if field == "" {
		field = "(document)"
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// related reports whether field, a parent or a child of it already has an
// error ("" is the document, the parent of every field).
func (d *decoder) related(field string) bool {
	for b := range d.bad {
		if b == "" || b == field || isPrefix(b, field) || isPrefix(field, b) {
			return true
		}
	}
	return false
}

func isPrefix(parent, field string) bool {
	return strings.HasPrefix(field, parent) && len(field) > len(parent) &&
		(field[len(parent)] == '.' || field[len(parent)] == '[')
}

// line returns the line of field, or of its nearest recorded parent.
func (d *decoder) line(field string) int {
	for {
		if l, ok := d.lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i <= 0 {
			return d.lines[""]
		}
		field = field[:i]
	}
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// mapping checks that n is a mapping with only the allowed keys, no
// duplicates, and every required key; it returns key → value node.
func (d *decoder) mapping(n *yaml.Node, field string, allowed []string, required ...string) map[string]*yaml.Node {
	d.lines[field] = n.Line
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, field, "want a mapping, got %s", kindName(n))
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		f := join(field, key)
		if !contains(allowed, key) {
			d.errorf(k, f, "unknown key %q (allowed: %s)", key, strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[key]; dup {
			d.errorf(k, f, "duplicate key %q", key)
			continue
		}
		d.lines[f] = v.Line
		out[key] = v
	}
	for _, r := range required {
		if _, ok := out[r]; !ok && !d.bad[join(field, r)] {
			d.errorf(n, join(field, r), "missing")
		}
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// deref follows an alias (`*name`) to its anchored node. The walk below
// follows the schema, not the graph, so a recursive alias cannot loop: it
// only ends up at a node of the wrong kind.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// seq checks that n is a list and returns its items, recording their lines.
func (d *decoder) seq(n *yaml.Node, field string) []*yaml.Node {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, field, "want a list, got %s", kindName(n))
		return nil
	}
	for i, it := range n.Content {
		d.lines[fmt.Sprintf("%s[%d]", field, i)] = it.Line
	}
	return n.Content
}

// str returns a scalar's value; null and non-scalars are errors.
func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, field, "want a value, got %s", kindName(n))
		return "", false
	}
	if n.Value == "" {
		d.errorf(n, field, "empty value")
		return "", false
	}
	return n.Value, true
}

func (d *decoder) document(n *yaml.Node, f *Federation) {
	top := d.mapping(n, "", []string{"regions", "nodes", "peers", "settings"}, "regions", "nodes")
	if v, ok := top["regions"]; ok {
		for i, it := range d.seq(v, "regions") {
			f.Deployment.Sites = append(f.Deployment.Sites, d.region(it, fmt.Sprintf("regions[%d]", i)))
		}
	}
	if v, ok := top["nodes"]; ok {
		for i, it := range d.seq(v, "nodes") {
			f.Deployment.Nodes = append(f.Deployment.Nodes, d.node(it, fmt.Sprintf("nodes[%d]", i)))
		}
	}
	if v, ok := top["peers"]; ok {
		f.Deployment.Peers = d.peers(v, "peers")
	}
	if v, ok := top["settings"]; ok {
		m := d.mapping(v, "settings", []string{"realm", "cluster_label"})
		if x, ok := m["realm"]; ok {
			f.Settings.Realm, _ = d.str(x, "settings.realm")
		}
		if x, ok := m["cluster_label"]; ok {
			f.Settings.ClusterLabel, _ = d.str(x, "settings.cluster_label")
		}
	}
}

var indRE = regexp.MustCompile(`^([0-9]{1,2})-([0-9]{1,2})$`)

func (d *decoder) region(n *yaml.Node, field string) topology.Site {
	var s topology.Site
	m := d.mapping(n, field, []string{"id", "ind", "pgw_host", "pools"}, "id", "pools")
	if v, ok := m["id"]; ok {
		id, _ := d.str(v, field+".id")
		s.Region = topology.RegionID(id)
	}
	if v, ok := m["ind"]; ok {
		// "FIRST-LAST", inclusive (TS 33.102 Annex C IND values 0–31).
		if raw, ok := d.str(v, field+".ind"); ok {
			mm := indRE.FindStringSubmatch(raw)
			if mm == nil {
				d.errorf(v, field+".ind", "bad IND slice %q: want FIRST-LAST, e.g. 0-7", raw)
			} else {
				a, _ := strconv.Atoi(mm[1])
				b, _ := strconv.Atoi(mm[2])
				s.IND = topology.INDSlice{First: uint8(a), Last: uint8(b)}
			}
		}
	} else if def, ok := topology.DefaultINDSlice(s.Region); ok {
		s.IND = def
	}
	if v, ok := m["pgw_host"]; ok {
		s.PGWHost, _ = d.str(v, field+".pgw_host")
	}
	if v, ok := m["pools"]; ok {
		for i, it := range d.seq(v, field+".pools") {
			pf := fmt.Sprintf("%s.pools[%d]", field, i)
			pm := d.mapping(it, pf, []string{"apn", "prefix"}, "apn", "prefix")
			var p topology.Pool
			if x, ok := pm["apn"]; ok {
				p.APN, _ = d.str(x, pf+".apn")
			}
			if x, ok := pm["prefix"]; ok {
				p.Prefix = d.prefix(x, pf+".prefix")
			}
			s.Pools = append(s.Pools, p)
		}
	}
	return s
}

func (d *decoder) prefix(n *yaml.Node, field string) netip.Prefix {
	raw, ok := d.str(n, field)
	if !ok {
		return netip.Prefix{}
	}
	p, err := netip.ParsePrefix(raw)
	if err != nil {
		d.errorf(n, field, "bad prefix %q: %v", raw, err)
		return netip.Prefix{}
	}
	return p
}

// Standard ports (DESIGN.md §5), used when a node omits an endpoint its
// role needs.
var defaultPorts = map[topology.Endpoint]uint16{
	topology.EndpointDiameter: 3868, // RFC 6733 §2.1, IANA
	topology.EndpointGTPC:     2123, // TS 29.274 §4.4.2.1 (GTPv2-C), same for GTPv1-C
	topology.EndpointGTPU:     2152, // TS 29.281 §4.4.2
	topology.EndpointGossip:   7946, // memberlist default
	topology.EndpointRaft:     7947,
	topology.EndpointAPI:      8080,
}

var endpointOrder = []topology.Endpoint{
	topology.EndpointDiameter, topology.EndpointGTPC, topology.EndpointGTPU,
	topology.EndpointGossip, topology.EndpointRaft, topology.EndpointAPI,
}

func (d *decoder) node(n *yaml.Node, field string) topology.Node {
	var node topology.Node
	keys := []string{"name", "region", "role", "address"}
	for _, e := range endpointOrder {
		keys = append(keys, string(e))
	}
	m := d.mapping(n, field, keys, "name", "role")
	if m == nil {
		return node
	}
	if v, ok := m["name"]; ok {
		node.Name, _ = d.str(v, field+".name")
	}
	if v, ok := m["region"]; ok {
		r, _ := d.str(v, field+".region")
		node.Region = topology.RegionID(r)
	}
	if v, ok := m["role"]; ok {
		r, _ := d.str(v, field+".role")
		node.Role = topology.Role(r)
	}
	var addr netip.Addr
	if v, ok := m["address"]; ok {
		if raw, ok := d.str(v, field+".address"); ok {
			a, err := netip.ParseAddr(raw)
			if err != nil {
				d.errorf(v, field+".address", "bad address %q: %v", raw, err)
			} else {
				addr = a
			}
		}
	}
	set := func(e topology.Endpoint, ap netip.AddrPort) {
		switch e {
		case topology.EndpointDiameter:
			node.Diameter = ap
		case topology.EndpointGTPC:
			node.GTPC = ap
		case topology.EndpointGTPU:
			node.GTPU = ap
		case topology.EndpointGossip:
			node.Gossip = ap
		case topology.EndpointRaft:
			node.Raft = ap
		case topology.EndpointAPI:
			node.API = ap
		}
	}
	var omitted []string
	for _, e := range endpointOrder {
		ef := field + "." + string(e)
		v, ok := m[string(e)]
		if !ok {
			// A core serves every interface, a witness gossip and raft:
			// omitted ones take the standard port on the node's address.
			need := node.Role == topology.RoleCore || e == topology.EndpointGossip || e == topology.EndpointRaft
			if need && addr.IsValid() {
				set(e, netip.AddrPortFrom(addr, defaultPorts[e]))
			} else if need {
				omitted = append(omitted, string(e))
				d.bad[ef] = true // reported once, below, as the missing address
			}
			continue
		}
		raw, ok := d.str(v, ef)
		if !ok {
			continue
		}
		if port, err := strconv.ParseUint(raw, 10, 16); err == nil {
			// A bare port lives on the node's address.
			if port == 0 {
				d.errorf(v, ef, "bad port %q: want 1–65535", raw)
			} else if !addr.IsValid() {
				if !d.bad[field+".address"] {
					d.errorf(v, ef, "port %s without an address: set address or use ADDR:PORT", raw)
				}
			} else {
				set(e, netip.AddrPortFrom(addr, uint16(port)))
			}
			continue
		}
		ap, err := netip.ParseAddrPort(raw)
		if err != nil {
			d.errorf(v, ef, "bad address:port %q: want PORT or ADDR:PORT ([IPv6]:PORT)", raw)
			continue
		}
		set(e, ap)
	}
	if len(omitted) > 0 && !d.bad[field+".address"] {
		d.errorf(n, field+".address", "missing: needed for %s (or give each as ADDR:PORT)", strings.Join(omitted, ", "))
	}
	return node
}

func (d *decoder) peers(n *yaml.Node, field string) topology.Peers {
	var p topology.Peers
	m := d.mapping(n, field, []string{"prefixes", "diameter"})
	if v, ok := m["prefixes"]; ok {
		for i, it := range d.seq(v, field+".prefixes") {
			pf := fmt.Sprintf("%s.prefixes[%d]", field, i)
			if x := d.prefix(it, pf); x.IsValid() {
				if x != x.Masked() {
					d.errorf(it, pf, "prefix %s has host bits set (want %s)", x, x.Masked())
				}
				p.Prefixes = append(p.Prefixes, x)
			}
		}
	}
	if v, ok := m["diameter"]; ok {
		for i, it := range d.seq(v, field+".diameter") {
			df := fmt.Sprintf("%s.diameter[%d]", field, i)
			dm := d.mapping(it, df, []string{"host", "realm"}, "realm")
			var dp topology.DiameterPeer
			if x, ok := dm["host"]; ok {
				dp.Host, _ = d.str(x, df+".host")
			}
			if x, ok := dm["realm"]; ok {
				dp.Realm, _ = d.str(x, df+".realm")
			}
			p.Diameter = append(p.Diameter, dp)
		}
	}
	return p
}

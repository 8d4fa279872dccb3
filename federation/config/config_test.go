package config

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/rendezvous-core/rendezvous/topology"
)

func TestLabIsValid(t *testing.T) {
	lab := Lab()
	if err := lab.Deployment.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"jp": "127.0.1.1", "us": "127.0.2.1", "de": "127.0.3.1", "au": "127.0.4.1", "witness": "127.0.5.1"}
	for name, addr := range want {
		n, err := lab.Node(name)
		if err != nil {
			t.Fatal(err)
		}
		if n.Gossip != netip.MustParseAddrPort(addr+":7946") || n.Raft != netip.MustParseAddrPort(addr+":7947") ||
			n.API != netip.MustParseAddrPort(addr+":8080") {
			t.Errorf("node %s: %+v", name, n)
		}
		if name == "witness" {
			if n.Role != topology.RoleWitness || n.Region != "" {
				t.Errorf("witness: %+v", n)
			}
			continue
		}
		if n.Role != topology.RoleCore || n.Diameter != netip.MustParseAddrPort(addr+":3868") ||
			n.GTPC != netip.MustParseAddrPort(addr+":2123") || n.GTPU != netip.MustParseAddrPort(addr+":2152") {
			t.Errorf("node %s: %+v", name, n)
		}
	}
	if _, err := lab.Node("fr"); err == nil || !strings.Contains(err.Error(), `"fr"`) {
		t.Errorf("Node(fr) error = %v", err)
	}
	if !lab.Deployment.Peers.AllowsAddr(netip.MustParseAddr("127.8.9.10")) || !lab.Deployment.Peers.AllowsDiameter("mme", "any.realm") {
		t.Error("lab does not allow every loopback peer")
	}
	Lab().Deployment.Nodes[0].Name = "changed"
	if Lab().Deployment.Nodes[0].Name != "jp" {
		t.Error("Lab() shares state between calls")
	}
}

// TestExampleIsLab: the shipped example is the lab federation.
func TestExampleIsLab(t *testing.T) {
	f, err := Load("../../examples/federation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lab := Lab()
	if !reflect.DeepEqual(f.Deployment, lab.Deployment) {
		t.Errorf("examples/federation.yaml:\n%+v\nLab():\n%+v", f.Deployment, lab.Deployment)
	}
	if f.Settings != lab.Settings {
		t.Errorf("settings %+v, want %+v", f.Settings, lab.Settings)
	}
	if f.File != "../../examples/federation.yaml" {
		t.Errorf("File = %q", f.File)
	}
}

const minimal = `regions:
  - id: JP
    pools:
      - apn: "*"
        prefix: 10.41.0.0/16
nodes:
  - name: jp
    region: JP
    role: core
    address: 127.0.1.1
`

func TestParseDefaults(t *testing.T) {
	f, err := Parse("min.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Deployment.Site(topology.JP)
	if s.IND != (topology.INDSlice{First: 0, Last: 7}) {
		t.Errorf("default IND = %v", s.IND)
	}
	n, _ := f.Node("jp")
	if n.Diameter.Port() != 3868 || n.GTPC.Port() != 2123 || n.GTPU.Port() != 2152 || n.API.Port() != 8080 {
		t.Errorf("default ports: %+v", n)
	}
	// Explicit ADDR:PORT, IPv6.
	f, err = Parse("v6.yaml", []byte(minimal+"    gtpu: \"[2001:db8::1]:2152\"\n    api: 127.0.0.1:9090\n"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ = f.Node("jp")
	if n.GTPU != netip.MustParseAddrPort("[2001:db8::1]:2152") || n.API != netip.MustParseAddrPort("127.0.0.1:9090") {
		t.Errorf("explicit endpoints: %+v", n)
	}
}

// TestParseErrors: each malformed file yields errors at the right line and field.
func TestParseErrors(t *testing.T) {
	type loc struct {
		line  int
		field string
	}
	tests := []struct {
		name string
		data string
		want []loc
	}{
		{"empty", ``, []loc{{1, "(file)"}}},
		{"syntax", "a: 1\n  b: 2\n", []loc{{2, "(syntax)"}}},
		{"not a mapping", "- a\n- b\n", []loc{{1, "(document)"}}},
		{"unknown top key", minimal + "extra: 1\n", []loc{{11, "extra"}}},
		{"missing nodes", "regions: []\n", []loc{{1, "nodes"}, {1, "regions"}}},
		{"empty lists", "regions: []\nnodes: []\n", []loc{{1, "regions"}, {2, "nodes"}}},
		{"unknown node key", minimal + "    colour: red\n", []loc{{11, "nodes[0].colour"}}},
		{"duplicate key", minimal + "    role: witness\n", []loc{{11, "nodes[0].role"}}},
		{"missing name", strings.Replace(minimal, "  - name: jp\n    region", "  - region", 1), []loc{{7, "nodes[0].name"}}},
		{"bad prefix", strings.Replace(minimal, "10.41.0.0/16", "10.41.0.0/33", 1), []loc{{5, "regions[0].pools[0].prefix"}}},
		{"host bits", strings.Replace(minimal, "10.41.0.0/16", "10.41.0.1/16", 1), []loc{{5, "regions[0].pools[0].prefix"}}},
		{"bad address", strings.Replace(minimal, "127.0.1.1", "127.0.1.256", 1), []loc{{10, "nodes[0].address"}}},
		{"bad endpoint", minimal + "    gtpc: 127.0.1.1\n", []loc{{11, "nodes[0].gtpc"}}},
		{"port 0", minimal + "    gtpc: 0\n", []loc{{11, "nodes[0].gtpc"}}},
		{"port without address", strings.Replace(minimal, "    address: 127.0.1.1\n", "    diameter: 3868\n", 1), []loc{
			{10, "nodes[0].diameter"}, {7, "nodes[0].address"}}},
		{"unknown region", strings.Replace(minimal, "region: JP", "region: FR", 1), []loc{{8, "nodes[0].region"}, {2, "regions[0]"}}},
		{"unknown region id", strings.Replace(minimal, "id: JP", "id: XX", 1), []loc{{2, "regions[0].id"}, {8, "nodes[0].region"}}},
		{"bad role", strings.Replace(minimal, "role: core", "role: leader", 1), []loc{{9, "nodes[0].role"}, {2, "regions[0]"}}},
		{"bad IND", strings.Replace(minimal, "  - id: JP\n", "  - id: JP\n    ind: 0..7\n", 1), []loc{{3, "regions[0].ind"}}},
		{"IND too big", strings.Replace(minimal, "  - id: JP\n", "  - id: JP\n    ind: 30-40\n", 1), []loc{{3, "regions[0].ind"}}},
		{"missing pools", "regions:\n  - id: JP\nnodes:\n  - name: jp\n    region: JP\n    role: core\n    address: 127.0.1.1\n",
			[]loc{{2, "regions[0].pools"}}},
		{"pools not a list", strings.Replace(minimal, "    pools:\n      - apn: \"*\"\n        prefix: 10.41.0.0/16\n", "    pools: 10.41.0.0/16\n", 1),
			[]loc{{3, "regions[0].pools"}}},
		{"empty apn", strings.Replace(minimal, `apn: "*"`, `apn: ""`, 1), []loc{{4, "regions[0].pools[0].apn"}}},
		{"null name", strings.Replace(minimal, "name: jp", "name:", 1), []loc{{7, "nodes[0].name"}}},
		{"unknown peers key", minimal + "peers:\n  prefix: [127.0.0.0/8]\n", []loc{{12, "peers.prefix"}}},
		{"bad peer prefix", minimal + "peers:\n  prefixes:\n    - 127.0.0.1/8\n    - nonsense\n", []loc{{13, "peers.prefixes[0]"}, {14, "peers.prefixes[1]"}}},
		{"peer without realm", minimal + "peers:\n  diameter:\n    - host: mme.example\n", []loc{{13, "peers.diameter[0].realm"}}},
		{"unknown setting", minimal + "settings:\n  realm: x\n  debug: true\n", []loc{{13, "settings.debug"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, tt.data, func(got []*Error) []string {
				var out []string
				for _, e := range got {
					out = append(out, locString(e.Line, e.Field))
				}
				return out
			}, func() []string {
				var out []string
				for _, w := range tt.want {
					out = append(out, locString(w.line, w.field))
				}
				return out
			}())
		})
	}
}

// TestParseModelErrors: errors found by topology's Validate point at lines too.
func TestParseModelErrors(t *testing.T) {
	lab := readExample(t)
	tests := []struct {
		name     string
		old, new string
		want     []string
	}{
		{"overlapping pools", "prefix: 10.42.0.0/16", "prefix: 10.41.128.0/17", []string{"32 regions[1].pools[0].prefix"}},
		{"duplicate address:port", "    address: 127.0.2.1\n    diameter: 3868\n", "    address: 127.0.2.1\n    diameter: 127.0.1.1:3868\n",
			[]string{"67 nodes[1].diameter"}},
		{"duplicate node name", "  - name: us\n", "  - name: jp\n", []string{"63 nodes[1].name"}},
		{"overlapping IND", "ind: 8-15", "ind: 7-15", []string{"28 regions[1].ind"}},
		{"duplicate region", "  - id: US\n", "  - id: JP\n", []string{"27 regions[1].id", "64 nodes[1].region"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(lab, tt.old) {
				t.Fatalf("example has no %q", tt.old)
			}
			data := strings.Replace(lab, tt.old, tt.new, 1)
			checkErrors(t, data, func(got []*Error) []string {
				var out []string
				for _, e := range got {
					out = append(out, locString(e.Line, e.Field))
				}
				return out
			}, tt.want)
		})
	}
}

func locString(line int, field string) string {
	return strings.TrimSpace(strconv.Itoa(line) + " " + field)
}

func checkErrors(t *testing.T, data string, locs func([]*Error) []string, want []string) {
	t.Helper()
	f, err := Parse("fed.yaml", []byte(data))
	if err == nil {
		t.Fatalf("Parse accepted the file: %+v", f)
	}
	if f != nil {
		t.Errorf("Parse returned a federation with an error")
	}
	var got []*Error
	for _, e := range unjoin(err) {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %v is not a *config.Error", e)
		}
		if ce.File != "fed.yaml" || !strings.HasPrefix(ce.Error(), "fed.yaml:"+strconv.Itoa(ce.Line)+": "+ce.Field+": ") || ce.Msg == "" {
			t.Errorf("bad error %#v / %q", ce, ce.Error())
		}
		got = append(got, ce)
	}
	g := locs(got)
	if strings.Join(sorted(g), "|") != strings.Join(sorted(want), "|") {
		t.Errorf("errors at %q, want %q\n%v", g, want, err)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func readExample(t *testing.T) string {
	t.Helper()
	f, err := Load("../../examples/federation.yaml")
	if err != nil || f == nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../examples/federation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package topology

import (
	"errors"
	"net/netip"
	"sort"
	"testing"
)

// labDeployment is a valid four-region deployment plus a witness.
func labDeployment() Deployment {
	var d Deployment
	node := func(name string, region RegionID, role Role, addr string) Node {
		a := netip.MustParseAddr(addr)
		n := Node{Name: name, Region: region, Role: role,
			Gossip: netip.AddrPortFrom(a, 7946), Raft: netip.AddrPortFrom(a, 7947), API: netip.AddrPortFrom(a, 8080)}
		if role == RoleCore {
			n.Diameter = netip.AddrPortFrom(a, 3868)
			n.GTPC = netip.AddrPortFrom(a, 2123)
			n.GTPU = netip.AddrPortFrom(a, 2152)
		}
		return n
	}
	for i, r := range Regions() {
		ind, _ := DefaultINDSlice(r.ID)
		d.Sites = append(d.Sites, Site{Region: r.ID, IND: ind,
			Pools: []Pool{{APN: AnyAPN, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(41 + i), 0, 0}), 16)}}})
		d.Nodes = append(d.Nodes, node("node-"+string(r.ID), r.ID, RoleCore, netip.AddrFrom4([4]byte{127, 0, byte(i + 1), 1}).String()))
	}
	d.Nodes = append(d.Nodes, node("witness", "", RoleWitness, "127.0.5.1"))
	d.Peers = Peers{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Diameter: []DiameterPeer{{Realm: "*"}}}
	return d
}

func TestDefaultINDSlice(t *testing.T) {
	want := map[RegionID]INDSlice{JP: {0, 7}, US: {8, 15}, DE: {16, 23}, AU: {24, 31}}
	for id, w := range want {
		if got, ok := DefaultINDSlice(id); !ok || got != w {
			t.Errorf("DefaultINDSlice(%s) = %v, %v; want %v", id, got, ok, w)
		}
	}
	if _, ok := DefaultINDSlice("FR"); ok {
		t.Error("DefaultINDSlice(FR) ok")
	}
}

func TestDeploymentValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(d *Deployment)
		fields []string // FieldError.Field of every expected error
	}{
		{"valid lab", func(*Deployment) {}, nil},
		{"overlapping pools across regions", func(d *Deployment) {
			d.Sites[1].Pools[0].Prefix = netip.MustParsePrefix("10.41.128.0/17")
		}, []string{"regions[1].pools[0].prefix"}},
		{"overlapping pools in a region", func(d *Deployment) {
			d.Sites[0].Pools = append(d.Sites[0].Pools, Pool{APN: "iot", Prefix: netip.MustParsePrefix("10.41.1.0/24")})
		}, []string{"regions[0].pools[1].prefix"}},
		{"host bits", func(d *Deployment) {
			d.Sites[0].Pools[0].Prefix = netip.MustParsePrefix("10.41.0.1/16")
		}, []string{"regions[0].pools[0].prefix"}},
		{"no pool, empty APN", func(d *Deployment) {
			d.Sites[0].Pools = nil
			d.Sites[1].Pools[0].APN = ""
		}, []string{"regions[0].pools", "regions[1].pools[0].apn"}},
		{"duplicate address:port", func(d *Deployment) {
			d.Nodes[1].GTPU = d.Nodes[0].GTPU
		}, []string{"nodes[1].gtpu"}},
		{"same address:port twice in one node", func(d *Deployment) {
			d.Nodes[0].GTPU = d.Nodes[0].GTPC
		}, []string{"nodes[0].gtpu"}},
		{"port 0 and missing endpoint", func(d *Deployment) {
			d.Nodes[0].API = netip.AddrPortFrom(netip.MustParseAddr("127.0.1.1"), 0)
			d.Nodes[0].Diameter = netip.AddrPort{}
		}, []string{"nodes[0].api", "nodes[0].diameter"}},
		{"witness may omit diameter but not raft", func(d *Deployment) {
			d.Nodes[4].Raft = netip.AddrPort{}
		}, []string{"nodes[4].raft"}},
		{"IND out of range, reversed, overlapping", func(d *Deployment) {
			d.Sites[0].IND = INDSlice{0, 32}
			d.Sites[1].IND = INDSlice{15, 8}
			d.Sites[3].IND = INDSlice{20, 31}
		}, []string{"regions[0].ind", "regions[1].ind", "regions[3].ind"}},
		{"unknown and duplicate regions", func(d *Deployment) {
			d.Sites[2].Region = "FR"
			d.Sites[3].Region = JP
		}, []string{"regions[2].id", "regions[3].id", "nodes[2].region", "nodes[3].region"}},
		{"duplicate node name, bad role", func(d *Deployment) {
			d.Nodes[1].Name = d.Nodes[0].Name
			d.Nodes[2].Role = "leader"
		}, []string{"nodes[1].name", "nodes[2].role", "regions[2]"}},
		{"core without region", func(d *Deployment) {
			d.Nodes[0].Region = ""
		}, []string{"nodes[0].region", "regions[0]"}},
		{"empty", func(d *Deployment) { *d = Deployment{} }, []string{"nodes", "regions"}},
		{"peers", func(d *Deployment) {
			d.Peers.Prefixes = append(d.Peers.Prefixes, netip.Prefix{})
			d.Peers.Diameter = append(d.Peers.Diameter, DiameterPeer{Host: "mme.example"})
		}, []string{"peers.prefixes[1]", "peers.diameter[1].realm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := labDeployment()
			tt.modify(&d)
			err := d.Validate()
			var got []string
			for _, e := range unjoin(err) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %v is not a *FieldError", e)
				}
				got = append(got, fe.Field)
			}
			sort.Strings(got)
			want := append([]string(nil), tt.fields...)
			sort.Strings(want)
			if len(got) != len(want) {
				t.Fatalf("Validate() fields %q, want %q (error: %v)", got, want, err)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("Validate() fields %q, want %q (error: %v)", got, want, err)
				}
			}
		})
	}
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

func TestPeers(t *testing.T) {
	p := Peers{
		Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
		Diameter: []DiameterPeer{{Realm: "epc.mnc001.mcc001.3gppnetwork.org"}, {Host: "dra.example", Realm: "example"}},
	}
	addrs := []struct {
		a    string
		want bool
	}{
		{"127.0.9.9", true}, {"::ffff:127.0.0.1", true}, {"2001:db8::1", true}, {"10.0.0.1", false},
	}
	for _, tt := range addrs {
		if got := p.AllowsAddr(netip.MustParseAddr(tt.a)); got != tt.want {
			t.Errorf("AllowsAddr(%s) = %v", tt.a, got)
		}
	}
	diam := []struct {
		host, realm string
		want        bool
	}{
		{"mme1", "EPC.mnc001.mcc001.3gppnetwork.org", true},
		{"dra.example", "example", true},
		{"other.example", "example", false},
		{"x", "y", false},
	}
	for _, tt := range diam {
		if got := p.AllowsDiameter(tt.host, tt.realm); got != tt.want {
			t.Errorf("AllowsDiameter(%s, %s) = %v", tt.host, tt.realm, got)
		}
	}
	if !(Peers{Diameter: []DiameterPeer{{Realm: "*"}}}).AllowsDiameter("a", "b") {
		t.Error(`realm "*" does not allow every realm`)
	}
}

func TestINDSlice(t *testing.T) {
	s := INDSlice{8, 15}
	if !s.Contains(8) || !s.Contains(15) || s.Contains(7) || s.Contains(16) {
		t.Errorf("Contains wrong for %v", s)
	}
	if s.Overlaps(INDSlice{0, 7}) || !s.Overlaps(INDSlice{15, 20}) {
		t.Errorf("Overlaps wrong for %v", s)
	}
	if s.String() != "8-15" {
		t.Errorf("String() = %q", s.String())
	}
}

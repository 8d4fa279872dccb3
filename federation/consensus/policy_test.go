package consensus

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/steering"
	"github.com/rendezvous-core/rendezvous/topology"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.txt with the actual output (only commit the changes if you understand what caused them and if they are desired)")

var regions4 = []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU}

// policyEnv is the scripted harness of testdata/policy*.txt: an injected
// clock (t=), a scripted membership view (up=, down=), a table that
// proposals reach only through "apply" (the commit), and operator commands.
type policyEnv struct {
	t       *testing.T
	p       *Policy
	table   Table
	rtt     steering.Matrix
	pending []Command
	index   uint64
	start   time.Time
}

func newPolicyEnv(t *testing.T) *policyEnv {
	// The scripts were written for an 8 s window (the production preset
	// is shorter; the scripts test the mechanism, not the number).
	cfg := ProductionPolicy(regions4)
	cfg.ConfirmWindow = 8 * time.Second
	cfg.RTTInterval = -1
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &policyEnv{t: t, p: p, table: NewTable(regions4), start: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)}
}

func (e *policyEnv) run(cmd string, args []string) string {
	var b strings.Builder
	kv := map[string]string{}
	var flags []string
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		} else {
			flags = append(flags, a)
		}
	}
	switch cmd {
	case "step":
		d, err := time.ParseDuration(kv["t"])
		if err != nil {
			e.t.Fatalf("step: bad t=%q", kv["t"])
		}
		var peers []Peer
		for _, up := range []bool{true, false} {
			key := "down"
			if up {
				key = "up"
			}
			if kv[key] == "" {
				continue
			}
			for i, r := range strings.Split(kv[key], ",") {
				peers = append(peers, Peer{Name: fmt.Sprintf("%s-%s%d", strings.ToLower(r), key, i), Region: topology.RegionID(r), Up: up})
			}
		}
		leading := len(flags) > 0 && flags[0] == "leading"
		cmds := e.p.Step(Observation{Now: e.start.Add(d), Leading: leading, Table: e.table.Clone(), Peers: peers, RTT: e.rtt})
		e.pending = append(e.pending, cmds...)
		if len(cmds) == 0 {
			b.WriteString("(no proposals)\n")
		}
		for _, c := range cmds {
			fmt.Fprintf(&b, "propose %s\n", fmtCmd(e.start, c))
		}
	case "rtt":
		e.rtt = steering.Matrix{}
		for k, v := range kv {
			a, c, _ := strings.Cut(k, "-")
			d, err := time.ParseDuration(v)
			if err != nil {
				e.t.Fatal(err)
			}
			e.rtt[steering.MakePair(topology.RegionID(a), topology.RegionID(c))] = d
		}
		b.WriteString("ok\n")
	case "apply": // commit every pending proposal, in order
		for _, c := range e.pending {
			e.index++
			n, err := e.table.Apply(e.index, c)
			e.table = n
			if err != nil {
				fmt.Fprintf(&b, "rejected %s %s: %v\n", c.Op, c.Region, err)
			}
		}
		e.pending = nil
		b.WriteString(fmtTable(e.start, e.table))
	case "drop": // proposals lost (leadership lost before commit)
		fmt.Fprintf(&b, "dropped %d\n", len(e.pending))
		e.pending = nil
	case "operator":
		if len(flags) < 2 {
			e.t.Fatalf("operator OP REGION")
		}
		r := topology.RegionID(flags[1])
		d, _ := time.ParseDuration(kv["t"])
		e.index++
		n, err := e.table.Apply(e.index, Command{Op: Op(flags[0]), Region: r, Epoch: e.table.Regions[r].Epoch,
			Origin: OriginOperator, At: e.start.Add(d), Reason: "operator", FailoverTo: steering.FailoverOrder(r, regions4, nil, nil)})
		e.table = n
		if err != nil {
			fmt.Fprintf(&b, "rejected: %v\n", err)
		}
		b.WriteString(fmtTable(e.start, e.table))
	case "health":
		for _, h := range e.p.Health() {
			fmt.Fprintf(&b, "%s down=%v since=%s up=%d/%d\n", h.Region, h.Down, h.Since.Sub(e.start), h.Up, h.Total)
		}
	default:
		e.t.Fatalf("unknown command %q", cmd)
	}
	return b.String()
}

func fmtCmd(start time.Time, c Command) string {
	s := fmt.Sprintf("%s %s epoch=%d origin=%s at=%s", c.Op, c.Region, c.Epoch, c.Origin, c.At.Sub(start))
	if len(c.FailoverTo) > 0 {
		s += fmt.Sprintf(" to=%v", c.FailoverTo)
	}
	if len(c.RTT) > 0 {
		s += fmt.Sprintf(" rtt=%v", c.RTT)
	}
	return s
}

func fmtTable(start time.Time, t Table) string {
	var b strings.Builder
	for _, r := range t.Sorted() {
		row := t.Regions[r]
		fmt.Fprintf(&b, "%s %s epoch=%d", r, row.State, row.Epoch)
		if row.Epoch > 0 {
			fmt.Fprintf(&b, " since=%s origin=%s", row.Since.Sub(start), row.Origin)
		}
		if len(row.FailoverTo) > 0 {
			fmt.Fprintf(&b, " to=%v", row.FailoverTo)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestPolicyScripts runs testdata/policy_*.txt. A script is stanzas
// separated by blank lines: a command line, "----", the expected output.
// Lines starting with # are comments.
func TestPolicyScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/policy_*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

func runScript(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e := newPolicyEnv(t)
	var out strings.Builder
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		fields := strings.Fields(line)
		out.WriteString(line + "\n")
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("%s:%d: expected ---- after %q", path, i+1, line)
		}
		out.WriteString("----\n")
		var want strings.Builder
		for i++; i < len(lines) && lines[i] != ""; i++ {
			want.WriteString(lines[i] + "\n")
		}
		got := e.run(fields[0], fields[1:])
		out.WriteString(got + "\n")
		if !*rewrite && got != want.String() {
			t.Errorf("%s: %q:\ngot:\n%swant:\n%s", path, line, got, want.String())
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

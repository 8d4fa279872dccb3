package hss

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// TestExampleS6aClient: go-diameter v4.3.0's examples/s6a_client (built
// from the module, -network_type tcp) completes CER, AIR and ULR against
// this HSS, and the ULR is recorded in the registry.
func TestExampleS6aClient(t *testing.T) {
	bin := exampleBinary(t, "s6a_client")
	st := openStore(t)
	sub, _ := provision(t, st, nil)
	s := startHSS(t, st, nil)
	de := topology.PLMN{MCC: "262", MNC: "01"}.BCD()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-addr", s.Addrs()[0].String(), "-network_type", "tcp",
		"-diam_host", "mme.s6a-client.visited.example", "-diam_realm", "visited.example",
		"-imsi", string(sub.IMSI), "-plmnid", string(de[:]), "-vectors", "3", "-sleep", "0", "-watchdog", "0")
	out, err := cmd.CombinedOutput()
	if testing.Verbose() {
		t.Logf("s6a_client output:\n%s", out)
	}
	if err != nil {
		t.Fatalf("s6a_client: %v\n%s", err, out)
	}
	for _, want := range []string{"Received Authentication-Information Answer", "Received Update-Location Answer"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("s6a_client output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(string(out), "Unsigned32{2001}"); n < 2 {
		t.Fatalf("%d answers with Result-Code 2001 in the client's output:\n%s", n, out)
	}
	sv, err := st.Serving(ctx, sub.IMSI)
	if err != nil || sv.MMEHost != "mme.s6a-client.visited.example" || sv.Region != topology.DE {
		t.Fatalf("serving row %+v, %v", sv, err)
	}
}

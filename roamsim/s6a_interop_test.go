package roamsim

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("RDV_REQUIRE_ALL") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// startExampleS6aServer builds go-diameter's examples/s6a_server from the
// module at the version go.mod pins (v4.3.0) and runs it on addr.
func startExampleS6aServer(t *testing.T, addr string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		skipOrFail(t, "go toolchain not in PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "s6a_server")
	build := exec.Command(gobin, "build", "-o", bin, "github.com/fiorix/go-diameter/v4/examples/s6a_server")
	if out, err := build.CombinedOutput(); err != nil {
		skipOrFail(t, "cannot build go-diameter examples/s6a_server: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-addr", addr, "-pprof_addr", "", "-diam_host", "hss.example", "-diam_realm", "example")
	if err := cmd.Start(); err != nil {
		skipOrFail(t, "cannot start s6a_server: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if i == 200 {
			t.Fatalf("s6a_server never listened on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type nopMMEHandler struct{}

func (nopMMEHandler) cancelLocation(*mme, string, uint32, bool)     {}
func (nopMMEHandler) insertSubscriberData(*mme, string, netip.Addr) {}

// The example server answers AIR with one fixed vector made with keys we do
// not have: the USIM must reject it (MAC failure). ULR is answered 2001
// but without MIP6-Agent-Info, so no PGW is named.
func TestExampleS6aServer(t *testing.T) {
	if testing.Short() {
		t.Skip("interop with an external peer; skipped in -short")
	}
	const addr = "127.0.50.50:3868"
	startExampleS6aServer(t, addr)
	dev := testDevices(t, 1)[0]
	bcd, _ := plmnBCD(dev.Visited)

	m := newMME("t", "mme.t.roamsim.example", "roamsim.example", "", []string{addr}, 0, netip.Addr{},
		5*time.Second, 30*time.Second, testLogger(t), nopMMEHandler{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); m.run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	vs, err := m.AIR(ctx, string(dev.IMSI), bcd, nil)
	if err != nil {
		t.Fatalf("AIR: %v", err)
	}
	_, err = NewUSIM(SIMKeys{Ki: dev.Ki, OPc: dev.OPc}).Verify(vs[0], bcd)
	if !errors.Is(err, ErrMACFailure) {
		t.Fatalf("fixed vector: err %v, want the USIM to reject it with ErrMACFailure", err)
	}
	t.Logf("fixed vector rejected: %v", err)

	_, err = m.ULR(ctx, string(dev.IMSI), bcd, "")
	var fe *FormatError
	var de *DiameterError
	if errors.As(err, &de) || !errors.As(err, &fe) || !strings.Contains(err.Error(), "MIP6-Agent-Info") {
		t.Fatalf("ULR: %v; want a 2001 ULA that names no PGW", err)
	}

	// The whole emulator reports the same cause for the device.
	r := runSim(t, Config{
		Devices:    []Device{dev},
		HSS:        []string{addr},
		GTPC:       netip.MustParseAddrPort("127.0.50.52:0"),
		AttachRate: -1,
		Logger:     testLogger(t),
		PGWRegions: map[netip.Addr]topology.RegionID{},
	}, context.Background())
	d := r.Devices[0]
	if d.Attaches != 0 || len(d.Failures) != 1 || d.Failures[0].Stage != "USIM" || !strings.Contains(d.Failures[0].Cause, "MAC failure") {
		t.Fatalf("device report %+v", d)
	}
}

// Command roamsim emulates visited networks (MME, SGW, SGSN and devices) in
// many countries against a Rendezvous core — or any S6a HSS plus S8 PGW —
// and reports, per device, the region that served it, attach latency, data
// round-trip and failures with their cause.
//
//	roamsim --subscribers subs.csv --target 198.18.0.2            # one-shot
//	roamsim -n 200 --countries DE,JP,US,BR,ZA,AU --duration 5m    # continuous
//
// Defaults point at the lab of DESIGN.md §5 (HSS 127.0.{1..4}.1:3868, PGWs
// on the same addresses) with the emulator's SGW on 127.0.9.1.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wmnsk/go-gtp/gtpv1"
	"github.com/wmnsk/go-gtp/gtpv2"

	"github.com/rendezvous-core/rendezvous/roamsim"
	"github.com/rendezvous-core/rendezvous/topology"
)

const exitUsage = 2

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

type options struct {
	hss                  []string
	originRealm          string
	destRealm            string
	mmePool              int
	diamLocal            string
	diamTimeout          time.Duration
	gtpc, gtpu, ggsn     string
	pgwPort              uint16
	pgwRegions           []string
	t3                   time.Duration
	n3                   int
	subscribers          string
	n                    int
	imsiPrefix           string
	msisdnPrefix         string
	ki, opc              string
	amf                  string
	apn                  string
	rat                  string
	countries            string
	rate                 float64
	concurrency          int
	target               string
	udpPort              uint16
	probes               int
	interval             time.Duration
	probeTimeout         time.Duration
	duration             time.Duration
	reattachDelay        time.Duration
	retry                time.Duration
	statusEvery          time.Duration
	output               string
	logLevel             string
	listCountries        bool
	includeDevicesInJSON bool
	reportFile           string
	skip                 int
	modifyBearer         bool
	echoInterval         time.Duration
	minAttached          float64
}

// exitBelowMin is the exit code when fewer devices than --min-attached
// ever attached.
const exitBelowMin = 3

func main() {
	// go-gtp's package-global loggers: only the command may touch them.
	gtpv1.DisableLogging()
	gtpv2.DisableLogging()
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "roamsim:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(exitUsage)
		}
		if errors.Is(err, errBelowMin) {
			os.Exit(exitBelowMin)
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "roamsim",
		Short: "Visited-network emulator and load generator (MME, SGW, SGSN, devices)",
		Long: `roamsim plays the visited networks of N roaming devices spread over many countries:
an MME per country (S6a: AIR with USIM verification of the vector, ULR, CLR/IDR),
an SGW (S8 GTPv2-C) that follows the PGW named in the ULA, an SGSN (Gp GTPv1-C) for
3G devices, and GTP-U data (ICMP echo or UDP) to an internet target.

Without --duration it attaches every device, measures data, detaches and reports.
With --duration it keeps devices attached (re-attaching on CLR Reattach-Required),
prints a status line every --status-every, then detaches and reports.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.listCountries {
				return printCountries(cmd.OutOrStdout())
			}
			return run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.hss, "hss", []string{"127.0.1.1:3868", "127.0.2.1:3868", "127.0.3.1:3868", "127.0.4.1:3868"},
		"S6a peers host:port; MME i starts at peer i mod len and fails over to the next")
	f.StringVar(&o.originRealm, "origin-realm", "roamsim.example", "Origin-Realm of the MMEs (Origin-Host mme.<cc>.<realm>)")
	f.StringVar(&o.destRealm, "dest-realm", "", "Destination-Realm of S6a requests (default: the peer's Origin-Realm)")
	f.IntVar(&o.mmePool, "mme-pool", 0, "0 = one MME per visited country; N = a pool of N MMEs")
	f.StringVar(&o.diamLocal, "diameter-local", "", "local IP of Diameter connections")
	f.DurationVar(&o.diamTimeout, "diameter-timeout", 5*time.Second, "S6a request and CER timeout")
	f.StringVar(&o.gtpc, "gtpc", "127.0.9.1:2123", "local SGW/SGSN GTP-C address")
	f.StringVar(&o.gtpu, "gtpu", "", "local SGW/SGSN GTP-U address (default: the GTP-C IP, port 2152)")
	f.StringVar(&o.ggsn, "ggsn", "", "GGSN GTP-C address for 3G devices")
	f.Uint16Var(&o.pgwPort, "pgw-port", roamsim.PortGTPC, "GTP-C port of the PGWs named in ULAs")
	f.StringSliceVar(&o.pgwRegions, "pgw-region", []string{"127.0.1.1=JP", "127.0.2.1=US", "127.0.3.1=DE", "127.0.4.1=AU"},
		"PGW/GGSN address to region, ADDR=REGION (repeatable)")
	f.DurationVar(&o.t3, "t3", 2*time.Second, "GTP-C retransmission timer T3")
	f.IntVar(&o.n3, "n3", 2, "GTP-C retransmissions N3")
	f.BoolVar(&o.modifyBearer, "modify-bearer", false, "send a Modify Bearer Request after each Create Session")
	f.DurationVar(&o.echoInterval, "echo-interval", 10*time.Second, "continuous mode: GTPv2 Echo to each PGW (restart detection); < 0 = off")
	f.StringVar(&o.subscribers, "subscribers", "", "subscriber CSV (imsi,msisdn,ki,opc,amf,apn,home_region); default: generate -n")
	f.IntVarP(&o.n, "devices", "n", 100, "devices to generate (without --subscribers); with --subscribers: at most this many (0 = all)")
	f.IntVar(&o.skip, "skip", 0, "skip the first N subscribers of --subscribers (e.g. those the lab's own devices use)")
	f.StringVar(&o.imsiPrefix, "imsi-prefix", "00101", "IMSI prefix of generated devices")
	f.StringVar(&o.msisdnPrefix, "msisdn-prefix", "4470", "MSISDN prefix of generated devices")
	f.StringVar(&o.ki, "ki", "465b5ce8b199b49faa5f0a2ee238a6bc", "Ki of generated devices (hex)")
	f.StringVar(&o.opc, "opc", "cd63cb71954a9f4e48a5994e37a02baf", "OPc of generated devices (hex)")
	f.StringVar(&o.amf, "amf", "8000", "AMF of generated devices (hex)")
	f.StringVar(&o.apn, "apn", "", "APN (default: the subscription's default APN)")
	f.StringVar(&o.rat, "rat", "4g", "RAT of generated devices: 4g or 3g")
	f.StringVar(&o.countries, "countries", "", "visited countries, ISO alpha-2 comma list (default: all 30 built in)")
	f.BoolVar(&o.listCountries, "list-countries", false, "print the built-in countries and exit")
	f.Float64Var(&o.rate, "rate", 100, "attach attempts per second (token bucket); < 0 = unlimited")
	f.IntVar(&o.concurrency, "concurrency", 64, "device procedures in flight")
	f.StringVar(&o.target, "target", "", "internet target of the data probes (empty: no data)")
	f.Uint16Var(&o.udpPort, "udp-port", 0, "send UDP probes to this port instead of ICMP echo")
	f.IntVar(&o.probes, "probes", 3, "probes per device in one-shot mode")
	f.DurationVar(&o.interval, "interval", 0, "interval between a device's probes (default 200ms one-shot, 1s continuous)")
	f.DurationVar(&o.probeTimeout, "probe-timeout", 2*time.Second, "a probe unanswered this long is lost")
	f.DurationVar(&o.duration, "duration", 0, "continuous mode for this long (0 = one-shot)")
	f.DurationVar(&o.reattachDelay, "reattach-delay", 200*time.Millisecond, "delay before re-attaching after CLR Reattach-Required")
	f.DurationVar(&o.retry, "retry", 5*time.Second, "continuous mode: retry a failed attach after this")
	f.DurationVar(&o.statusEvery, "status-every", 5*time.Second, "continuous mode: status line period on stderr (0 = none)")
	f.StringVarP(&o.output, "output", "o", "table", "report format: table or json")
	f.BoolVar(&o.includeDevicesInJSON, "devices-json", true, "include the per-device list in -o json")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	f.StringVar(&o.reportFile, "report", "", "also write the JSON report (with devices) to this file")
	f.Float64Var(&o.minAttached, "min-attached", 0, "exit 3 if fewer than this fraction of devices ever attached (0..1)")
	return cmd
}

func printCountries(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "CC\tPLMN\tCONTINENT\tNAME")
	for _, c := range roamsim.DefaultCountries() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Alpha2, c.PLMN, c.Continent, c.Name)
	}
	return tw.Flush()
}

func parseAddrPort(flag, s string, defPort uint16) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, usageError{fmt.Errorf("--%s %q: want IP or IP:port", flag, s)}
	}
	return netip.AddrPortFrom(a, defPort), nil
}

func hex16(flag, s string) ([16]byte, error) {
	var k [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return k, usageError{fmt.Errorf("--%s %q: want 32 hex digits", flag, s)}
	}
	copy(k[:], b)
	return k, nil
}

func buildConfig(o options, log *slog.Logger) (roamsim.Config, error) {
	var cfg roamsim.Config
	if o.output != "table" && o.output != "json" {
		return cfg, usageError{fmt.Errorf("--output %q: want table or json", o.output)}
	}
	countries := roamsim.DefaultCountries()
	if o.countries != "" {
		sel, err := roamsim.SelectCountries(countries, strings.Split(o.countries, ","))
		if err != nil {
			return cfg, usageError{err}
		}
		countries = sel
	}
	var devs []roamsim.Device
	if o.subscribers != "" {
		f, err := os.Open(o.subscribers)
		if err != nil {
			return cfg, usageError{err}
		}
		devs, err = roamsim.LoadSubscribersCSV(f)
		f.Close()
		if err != nil {
			return cfg, usageError{err}
		}
		if o.skip > 0 {
			devs = devs[min(o.skip, len(devs)):]
		}
		if o.n > 0 && o.n < len(devs) {
			devs = devs[:o.n]
		}
		if err := roamsim.AssignCountries(devs, countries); err != nil {
			return cfg, usageError{err}
		}
		if o.apn != "" {
			for i := range devs {
				devs[i].APN = o.apn
			}
		}
	} else {
		ki, err := hex16("ki", o.ki)
		if err != nil {
			return cfg, err
		}
		opc, err := hex16("opc", o.opc)
		if err != nil {
			return cfg, err
		}
		amf, err := hex.DecodeString(o.amf)
		if err != nil || len(amf) != 2 {
			return cfg, usageError{fmt.Errorf("--amf %q: want 4 hex digits", o.amf)}
		}
		rat := roamsim.RAT4G
		switch strings.ToLower(o.rat) {
		case "4g", "lte", "eutran":
		case "3g", "umts", "utran":
			rat = roamsim.RAT3G
		default:
			return cfg, usageError{fmt.Errorf("--rat %q: want 4g or 3g", o.rat)}
		}
		devs, err = roamsim.Spread(o.n, countries, roamsim.Template{IMSIPrefix: o.imsiPrefix, FirstIndex: 1,
			MSISDNPrefix: o.msisdnPrefix, Ki: ki, OPc: opc, AMF: uint16(amf[0])<<8 | uint16(amf[1]), APN: o.apn, RAT: rat})
		if err != nil {
			return cfg, usageError{err}
		}
	}
	gtpc, err := parseAddrPort("gtpc", o.gtpc, roamsim.PortGTPC)
	if err != nil {
		return cfg, err
	}
	gtpu, err := parseAddrPort("gtpu", o.gtpu, roamsim.PortGTPU)
	if err != nil {
		return cfg, err
	}
	ggsn, err := parseAddrPort("ggsn", o.ggsn, roamsim.PortGTPC)
	if err != nil {
		return cfg, err
	}
	regions := map[netip.Addr]topology.RegionID{}
	for _, pr := range o.pgwRegions {
		a, r, ok := strings.Cut(pr, "=")
		ip, err := netip.ParseAddr(a)
		if !ok || err != nil || r == "" {
			return cfg, usageError{fmt.Errorf("--pgw-region %q: want ADDR=REGION", pr)}
		}
		regions[ip] = topology.RegionID(strings.ToUpper(r))
	}
	var target netip.Addr
	if o.target != "" {
		if target, err = netip.ParseAddr(o.target); err != nil || !target.Is4() {
			return cfg, usageError{fmt.Errorf("--target %q: want an IPv4 address", o.target)}
		}
	}
	var dlocal netip.Addr
	if o.diamLocal != "" {
		if dlocal, err = netip.ParseAddr(o.diamLocal); err != nil {
			return cfg, usageError{fmt.Errorf("--diameter-local %q: %w", o.diamLocal, err)}
		}
	}
	cfg = roamsim.Config{
		Devices: devs, Countries: countries, HSS: o.hss, MMEPool: o.mmePool, OriginRealm: o.originRealm,
		DestinationRealm: o.destRealm, DiameterLocal: dlocal, DiameterTimeout: o.diamTimeout,
		GTPC: gtpc, GTPU: gtpu, PGWPort: o.pgwPort, GGSN: ggsn, T3: o.t3, N3: o.n3,
		ModifyBearer: o.modifyBearer, EchoInterval: o.echoInterval,
		RestartCounter: uint8(time.Now().Unix()), PGWRegions: regions,
		Target: target, UDPPort: o.udpPort, Probes: o.probes, DataInterval: o.interval, ProbeTimeout: o.probeTimeout,
		Concurrency: o.concurrency, AttachRate: o.rate, ReattachDelay: o.reattachDelay, RetryInterval: o.retry,
		Logger: log,
	}
	if o.duration > 0 {
		cfg.Mode = roamsim.Continuous
	}
	return cfg, nil
}

func run(ctx context.Context, stdout, stderr io.Writer, o options) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level %q: %w", o.logLevel, err)}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	cfg, err := buildConfig(o, log)
	if err != nil {
		return err
	}
	sim, err := roamsim.New(cfg)
	if err != nil {
		return usageError{err}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		if o.duration <= 0 || o.statusEvery <= 0 {
			return
		}
		t := time.NewTicker(o.statusEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				printStatus(stderr, sim.Snapshot())
			}
		}
	}()
	rep, err := sim.Run(ctx)
	<-statusDone
	if err != nil {
		return err
	}
	if o.reportFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.reportFile, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	devices := rep.Devices
	if o.output == "json" {
		if !o.includeDevicesInJSON {
			rep.Devices = nil
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return err
	}
	if n := len(devices); n > 0 && float64(rep.Totals.EverOK) < o.minAttached*float64(n) {
		return fmt.Errorf("%w: %d of %d devices attached, want at least %.0f%%", errBelowMin, rep.Totals.EverOK, n, o.minAttached*100)
	}
	return nil
}

var errBelowMin = errors.New("too few devices attached")

func printStatus(w io.Writer, r roamsim.Report) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s attached %d/%d failed %d", time.Now().UTC().Format("15:04:05"), r.Totals.Attached, r.Totals.Devices, r.Totals.Failed)
	for _, a := range r.Regions {
		fmt.Fprintf(&b, " | %s %d rtt50 %.1fms", a.Key, a.Attached, a.RTTP50)
	}
	c := r.Counters
	fmt.Fprintf(&b, " | CLR %d reattach %d probes %d/%d\n", c.CLR, c.Reattaches, c.ProbesOK, c.ProbesSent)
	io.WriteString(w, b.String())
}

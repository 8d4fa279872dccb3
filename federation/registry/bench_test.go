package registry

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// BenchmarkRegistry measures, per backend, on a database holding
// RDV_BENCH_SUBSCRIBERS subscribers (default 10000; 1000000 for the closing
// numbers):
//
//	setup           the bulk import of the population (rows/s in the log)
//	import          more rows imported (ns/op = per row)
//	read_cached     Subscriber of a warm hot set (cache hits)
//	read_uncached   Subscriber with the cache off, random IMSIs of the population
//	read_uncached_parallel   the same from GOMAXPROCS goroutines
//	sqn_block32     NextSQNs(n=1) with the default block (mostly memory)
//	sqn_block1      NextSQNs(n=1) with SQNBlock=1: one database write each
//
// Run: RDV_TEST_PG_DSN=… RDV_BENCH_SUBSCRIBERS=1000000 \
//
//	go test -run '^$' -bench Registry -benchtime 2s -timeout 60m ./federation/registry/
func BenchmarkRegistry(b *testing.B) {
	n := 10000
	if v := os.Getenv("RDV_BENCH_SUBSCRIBERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("RDV_BENCH_SUBSCRIBERS=%q", v)
		}
	}
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			dsn := be.dsn(b)
			cfg := testConfig(dsn)
			cfg.CacheEntries = max(200000, 2*n)
			cfg.ImportBatch = 1000
			s := openStore(b, cfg)
			start := time.Now()
			rep, err := s.Import(ctx, &csvGen{n: n}, ImportCSV)
			if err != nil || rep.Imported != n {
				b.Fatalf("setup import: %+v %v", rep, err)
			}
			el := time.Since(start)
			b.Logf("%s: setup imported %d subscribers in %v: %.0f rows/s", be.name, n, el.Round(time.Millisecond), float64(n)/el.Seconds())

			next := n
			b.Run("import", func(b *testing.B) {
				g := &csvGen{first: next, n: b.N}
				next += b.N
				b.ResetTimer()
				rep, err := s.Import(ctx, g, ImportCSV)
				if err != nil || rep.Imported != b.N {
					b.Fatalf("import: %+v %v", rep, err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			})
			b.Run("read_cached", func(b *testing.B) {
				hot := min(n, 10000)
				for i := 0; i < hot; i++ {
					if _, err := s.Subscriber(ctx, benchIMSI(i)); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := s.Subscriber(ctx, benchIMSI(i%hot)); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
			})
			ucfg := testConfig(dsn)
			ucfg.CacheTTL, ucfg.SQNBlock = -1, 1
			u := openStore(b, ucfg)
			b.Run("read_uncached", func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 2))
				for i := 0; i < b.N; i++ {
					if _, err := u.Subscriber(ctx, benchIMSI(r.IntN(n))); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
				b.ReportMetric(counter(b, u.m.txRetries), "retries")
			})
			b.Run("read_uncached_parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					r := rand.New(rand.NewPCG(rand.Uint64(), 3))
					for pb.Next() {
						if _, err := u.Subscriber(ctx, benchIMSI(r.IntN(n))); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
			})
			b.Run("sqn_block32", func(b *testing.B) {
				r := rand.New(rand.NewPCG(3, 4))
				for i := 0; i < b.N; i++ {
					if _, err := s.NextSQNs(ctx, benchIMSI(r.IntN(min(n, 1000))), topology.JP, 1); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sqn/s")
			})
			b.Run("sqn_block1", func(b *testing.B) {
				r := rand.New(rand.NewPCG(5, 6))
				for i := 0; i < b.N; i++ {
					if _, err := u.NextSQNs(ctx, benchIMSI(r.IntN(n)), topology.US, 1); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sqn/s")
			})
		})
	}
}

func benchIMSI(i int) topology.IMSI { return topology.IMSI(fmt.Sprintf("00101%010d", i)) }

// csvGen streams a CSV subscriber file of n rows from IMSI number first,
// without holding it in memory.
type csvGen struct {
	first, n, i int
	buf         []byte
	header      bool
}

func (g *csvGen) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) {
		if !g.header {
			g.buf = append(g.buf, "imsi,msisdn,ki,opc,amf,apn,home_region\n"...)
			g.header = true
			continue
		}
		if g.i >= g.n {
			break
		}
		k := g.first + g.i
		g.i++
		regions := [4]string{"JP", "US", "DE", "AU"}
		g.buf = fmt.Appendf(g.buf, "00101%010d,8190%010d,%032x,%032x,8000,internet,%s\n", k, k, uint64(k)+1<<40, uint64(k)+7<<50, regions[k%4])
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	c := copy(p, g.buf)
	g.buf = g.buf[:copy(g.buf, g.buf[c:])]
	return c, nil
}

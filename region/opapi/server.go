package opapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Backend is what the server asks of the node. Implementations are safe for
// concurrent use.
type Backend interface {
	// Status returns the node's current view.
	Status(ctx context.Context) (Status, error)
	// Act performs an operator action; it is forwarded to the raft leader
	// by the backend or fails with an error wrapping ErrNotLeader.
	Act(ctx context.Context, region topology.RegionID, a Action) (ActionResult, error)
}

// ErrNotLeader is wrapped by Backend.Act when this node cannot decide.
var ErrNotLeader = errors.New("opapi: not the raft leader")

// ErrUnknownRegion is wrapped by Backend.Act for a region not in the table.
var ErrUnknownRegion = errors.New("opapi: unknown region")

// ServerConfig configures a Server.
type ServerConfig struct {
	// Listen is the API's address.
	Listen netip.AddrPort
	// Token is the bearer token every request must carry. Required.
	Token string
	// Backend answers the requests. Required.
	Backend Backend
	// Extra handlers mounted behind the same authentication (e.g. /metrics,
	// /debug/pprof/); keys are patterns for http.ServeMux.
	Extra map[string]http.Handler
	// Logger receives request errors; nil discards.
	Logger *slog.Logger
}

// Server is a running operator API.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error

	closeOnce sync.Once
	closeErr  error
}

// NewServer binds the API's address and starts serving.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Token == "" {
		return nil, errors.New("opapi: ServerConfig.Token is required")
	}
	if cfg.Backend == nil {
		return nil, errors.New("opapi: ServerConfig.Backend is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := cfg.Backend.Status(r.Context())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /v1/regions/{region}/{action}", func(w http.ResponseWriter, r *http.Request) {
		region := topology.RegionID(r.PathValue("region"))
		a := Action(r.PathValue("action"))
		switch a {
		case Drain, Failover, Restore, Rebalance:
		default:
			writeJSON(w, http.StatusNotFound, Error{Error: fmt.Sprintf("unknown action %q (want drain, failover, restore or rebalance)", a)})
			return
		}
		res, err := cfg.Backend.Act(r.Context(), region, a)
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, res)
		case errors.Is(err, ErrUnknownRegion):
			writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
		case errors.Is(err, ErrNotLeader):
			st, _ := cfg.Backend.Status(r.Context())
			writeJSON(w, http.StatusConflict, Error{Error: err.Error(), Leader: st.Leader})
		default:
			log.Warn("operator action failed", "region", region, "action", a, "err", err)
			writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
		}
	})
	for pattern, h := range cfg.Extra {
		mux.Handle(pattern, h)
	}
	ln, err := net.Listen("tcp", cfg.Listen.String())
	if err != nil {
		return nil, fmt.Errorf("opapi: listen %v: %w", cfg.Listen, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           authenticate(cfg.Token, mux),
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() netip.AddrPort {
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close stops the server, waits for in-flight requests (up to 5 s) and for
// the serving goroutine. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.closeErr = s.srv.Shutdown(ctx)
		<-s.done
		if s.closeErr == nil {
			s.closeErr = s.err
		}
	})
	return s.closeErr
}

// Authenticate wraps h so that every request must carry the bearer token
// (the lab's control API uses it too).
func Authenticate(token string, h http.Handler) http.Handler { return authenticate(token, h) }

// WriteJSON writes v as an indented JSON answer with the given status.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

func authenticate(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rendezvous"`)
			writeJSON(w, http.StatusUnauthorized, Error{Error: "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

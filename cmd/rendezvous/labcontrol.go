package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/region/opapi"
)

// labControl is the running lab's own API: drills on demand (rdvctl drill),
// behind the lab's bearer token. One drill at a time.
type labControl struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

func startLabControl(ctx context.Context, l *lab.Lab, rec *lab.Recorder, say func(string, ...any)) (*labControl, error) {
	var busy sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/drill", func(w http.ResponseWriter, r *http.Request) {
		var req opapi.DrillRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			opapi.WriteJSON(w, http.StatusBadRequest, opapi.Error{Error: "body: " + err.Error()})
			return
		}
		steps, err := lab.ParseDrill(req.Spec)
		if err != nil {
			opapi.WriteJSON(w, http.StatusBadRequest, opapi.Error{Error: err.Error()})
			return
		}
		if !busy.TryLock() {
			opapi.WriteJSON(w, http.StatusConflict, opapi.Error{Error: "a drill is already running"})
			return
		}
		defer busy.Unlock()
		say("drill requested: %s", req.Spec)
		rep, err := l.RunDrill(r.Context(), steps, rec, 30*time.Second)
		if err != nil {
			opapi.WriteJSON(w, http.StatusServiceUnavailable, opapi.Error{Error: err.Error()})
			return
		}
		say("drill finished:\n%s", rep.Markdown())
		opapi.WriteJSON(w, http.StatusOK, rep)
	})
	ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0).String())
	if err != nil {
		return nil, err
	}
	c := &labControl{
		srv: &http.Server{Handler: opapi.Authenticate(l.Token(), mux), ReadHeaderTimeout: 5 * time.Second,
			BaseContext: func(net.Listener) context.Context { return ctx }},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(c.done)
		if err := c.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			say("control API: %v", err)
		}
	}()
	return c, nil
}

func (c *labControl) Addr() netip.AddrPort { return c.ln.Addr().(*net.TCPAddr).AddrPort() }

func (c *labControl) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if err != nil {
		err = c.srv.Close()
	}
	<-c.done
	return err
}

package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgres is the lab's private PostgreSQL server, running as the
// "postgres" user in the registry namespace and listening only on the
// registry address of the lab subnet. Its data directory is a fresh
// temporary directory (PostgreSQL refuses to run as root, and the postgres
// user must be able to reach its data directory: the caller's state
// directory may be private to root).
type postgres struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	dsn  string
}

// findPostgresBin returns the newest /usr/lib/postgresql/*/bin with initdb.
func findPostgresBin(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		return "", errors.New("netns: no PostgreSQL server found (/usr/lib/postgresql/*/bin): install postgresql-15 or set Config.PostgresBin")
	}
	sort.Strings(m)
	return filepath.Dir(m[len(m)-1]), nil
}

func startPostgres(ctx context.Context, bin, logFile string) (_ *postgres, err error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("netns: postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Setpgid: true}
	dir, err := os.MkdirTemp("", "rdvns-pg-")
	if err != nil {
		return nil, fmt.Errorf("netns: postgres: %w", err)
	}
	p := &postgres{dir: dir}
	defer func() {
		if err != nil {
			_ = p.close()
		}
	}()
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("netns: postgres: %w", err)
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	initdb.SysProcAttr = cred
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("netns: initdb: %w: %s", err, out)
	}
	// Trust the lab subnet (the nodes and the host end of the fabric).
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("netns: postgres: %w", err)
	}
	_, err = fmt.Fprintf(hba, "host all all %s trust\n", subnet)
	if cerr := hba.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("netns: postgres: pg_hba.conf: %w", err)
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netns: postgres log: %w", err)
	}
	defer lf.Close()
	p.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses="+registryMember.addr.String(), "-p", strconv.Itoa(pgPort), "-k", dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")
	p.cmd.SysProcAttr = cred
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if err := startIn(registryMember.ns(), p.cmd); err != nil {
		return nil, err
	}
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		_ = p.cmd.Wait()
	}()
	p.dsn = fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", registryMember.addr, pgPort)
	// Ready when a connection from the host namespace (through the fabric)
	// succeeds: that is the path the nodes take too.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, p.dsn)
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("netns: postgres exited at start (log %s)", logFile)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("netns: postgres not ready after 30s: %w (log %s)", err, logFile)
		}
	}
}

// close stops the server (fast shutdown, then SIGKILL after 10 s) and
// removes its data directory.
func (p *postgres) close() error {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("netns: postgres: %w", err)
	}
	return nil
}

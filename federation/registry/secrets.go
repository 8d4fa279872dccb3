package registry

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Key material at rest. Ki and OPc (TS 33.102 §6.3, TS 35.206 §2: the
// long-term key and the operator variant constant derived from it) are sealed
// one by one with AES-256-GCM under a key-encryption key (KEK). A sealed value
// is nonce (12) || ciphertext (16) || tag (16); the additional data binds it
// to its row and column ("ki"/"opc" || 0 || IMSI), so a ciphertext copied to
// another subscriber or column fails to open. The KEK's id is stored per row
// (subscribers.kek_id) so keys can be rotated: rows sealed under an older
// KEK still open while it stays in the file, and Rekey reseals them.

const sealedLen = 12 + 16 + 16

// keyring holds the KEKs by id; primary seals.
type keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

func newKeyring(ids []string, keys [][]byte) (*keyring, error) {
	kr := &keyring{aeads: make(map[string]cipher.AEAD, len(ids))}
	for i, id := range ids {
		block, err := aes.NewCipher(keys[i])
		if err != nil {
			return nil, fmt.Errorf("registry: KEK %s: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("registry: KEK %s: %w", id, err)
		}
		if _, dup := kr.aeads[id]; dup {
			return nil, fmt.Errorf("registry: KEK id %q appears twice: %w", id, ErrInvalid)
		}
		kr.aeads[id] = aead
		if i == 0 {
			kr.primary = id
		}
	}
	return kr, nil
}

// loadKEKFile reads a KEK file (format: Config.KEKFile). Errors never quote
// key bytes.
func loadKEKFile(path string) (*keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("registry: KEK file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("registry: KEK file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("registry: KEK file %s: mode %v is readable by group or others (want 0600): %w", path, st.Mode().Perm(), ErrInvalid)
	}
	return parseKEKs(f, path)
}

func parseKEKs(r io.Reader, name string) (*keyring, error) {
	var ids []string
	var keys [][]byte
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("registry: KEK file %s:%d: want \"KEYID HEX64\": %w", name, line, ErrInvalid)
		}
		if !validKeyID(fields[0]) {
			return nil, fmt.Errorf("registry: KEK file %s:%d: bad key id: %w", name, line, ErrInvalid)
		}
		key := make([]byte, 32)
		if len(fields[1]) != 64 {
			return nil, fmt.Errorf("registry: KEK file %s:%d: key is not 64 hex digits: %w", name, line, ErrInvalid)
		}
		if _, err := hex.Decode(key, []byte(fields[1])); err != nil {
			return nil, fmt.Errorf("registry: KEK file %s:%d: key is not hex: %w", name, line, ErrInvalid)
		}
		ids = append(ids, fields[0])
		keys = append(keys, key)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("registry: KEK file %s: %w", name, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("registry: KEK file %s: no keys: %w", name, ErrInvalid)
	}
	return newKeyring(ids, keys)
}

func aad(column string, imsi topology.IMSI) []byte {
	b := make([]byte, 0, len(column)+1+len(imsi))
	b = append(b, column...)
	b = append(b, 0)
	return append(b, imsi...)
}

func (kr *keyring) seal(column string, imsi topology.IMSI, plain []byte) ([]byte, error) {
	aead := kr.aeads[kr.primary]
	out := make([]byte, 12, sealedLen)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("registry: seal: %w", err)
	}
	return aead.Seal(out, out, plain, aad(column, imsi)), nil
}

var errKeyMaterial = errors.New("registry: sealed key material does not open")

func (kr *keyring) open(kekID, column string, imsi topology.IMSI, sealed []byte, dst []byte) error {
	aead, ok := kr.aeads[kekID]
	if !ok {
		return fmt.Errorf("registry: %s of %s sealed under unknown KEK %q: %w", column, imsi, kekID, errKeyMaterial)
	}
	if len(sealed) != sealedLen {
		return fmt.Errorf("registry: %s of %s: sealed length %d: %w", column, imsi, len(sealed), errKeyMaterial)
	}
	plain, err := aead.Open(nil, sealed[:12], sealed[12:], aad(column, imsi))
	if err != nil || len(plain) != len(dst) {
		return fmt.Errorf("registry: %s of %s: %w", column, imsi, errKeyMaterial)
	}
	copy(dst, plain)
	clear(plain)
	return nil
}

// sealAuth seals Ki and OPc of a under the primary KEK.
func (kr *keyring) sealAuth(imsi topology.IMSI, a AuthData) (ki, opc []byte, kekID string, err error) {
	if ki, err = kr.seal("ki", imsi, a.Ki[:]); err != nil {
		return nil, nil, "", err
	}
	if opc, err = kr.seal("opc", imsi, a.OPc[:]); err != nil {
		return nil, nil, "", err
	}
	return ki, opc, kr.primary, nil
}

func (kr *keyring) openAuth(imsi topology.IMSI, kekID string, ki, opc []byte, amf int64) (AuthData, error) {
	var a AuthData
	if err := kr.open(kekID, "ki", imsi, ki, a.Ki[:]); err != nil {
		return AuthData{}, err
	}
	if err := kr.open(kekID, "opc", imsi, opc, a.OPc[:]); err != nil {
		return AuthData{}, err
	}
	a.AMF = [2]byte{byte(amf >> 8), byte(amf)}
	return a, nil
}

const redacted = "registry.AuthData{[redacted]}"

// String never prints the keys.
func (a AuthData) String() string { return redacted }

// GoString never prints the keys (%#v).
func (a AuthData) GoString() string { return redacted }

// LogValue never logs the keys (slog.LogValuer).
func (a AuthData) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Format never prints the keys, whatever the verb (%x, %v, %+v, %s, %q, %d).
func (a AuthData) Format(f fmt.State, verb rune) { _, _ = io.WriteString(f, redacted) }

// IsZero reports whether a holds no keys.
func (a AuthData) IsZero() bool {
	return bytes.Equal(a.Ki[:], make([]byte, 16)) && bytes.Equal(a.OPc[:], make([]byte, 16)) && a.AMF == [2]byte{}
}

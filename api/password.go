package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// HashParams are argon2id's cost parameters.
type HashParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultHashParams are OWASP's argon2id minimum: m=19 MiB, t=2, p=1.
var DefaultHashParams = HashParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

// passwords hashes and verifies passwords with argon2id. Each hash takes
// ~19 MiB and tens of milliseconds, so few run at once: a burst queues
// instead of exhausting memory. Logins (verify) and registrations (hash)
// have separate slots, so that a registration flood, which any address
// can start, cannot starve the logins of existing users.
type passwords struct {
	params      HashParams
	verifySlots chan struct{}
	hashSlots   chan struct{}
	// dummy is verified against when the user does not exist, so that an
	// unknown username costs the same time as a wrong password.
	dummy string
	// onHash, when set (tests only), runs while hash holds its slot.
	onHash func()
}

func newPasswords(p HashParams, verifyConcurrency, hashConcurrency int) *passwords {
	pw := &passwords{
		params:      p,
		verifySlots: make(chan struct{}, max(verifyConcurrency, 1)),
		hashSlots:   make(chan struct{}, max(hashConcurrency, 1)),
	}
	pw.dummy = pw.encode([]byte("confab-dummy-password"))
	return pw
}

func acquire(ctx context.Context, slots chan struct{}) error {
	select {
	case slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hash returns the PHC string of password.
func (p *passwords) hash(ctx context.Context, password string) (string, error) {
	if err := acquire(ctx, p.hashSlots); err != nil {
		return "", err
	}
	defer func() { <-p.hashSlots }()
	if p.onHash != nil {
		p.onHash()
	}
	return p.encode([]byte(password)), nil
}

func (p *passwords) encode(password []byte) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey(password, salt, p.params.Time, p.params.MemoryKiB, p.params.Threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.params.MemoryKiB, p.params.Time, p.params.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

var errBadHash = errors.New("malformed password hash")

// verify reports whether password matches encoded. An empty encoded hash
// (unknown user) is checked against the dummy and never matches.
func (p *passwords) verify(ctx context.Context, encoded, password string) (bool, error) {
	if err := acquire(ctx, p.verifySlots); err != nil {
		return false, err
	}
	defer func() { <-p.verifySlots }()
	known := encoded != ""
	if !known {
		encoded = p.dummy
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var hp HashParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &hp.MemoryKiB, &hp.Time, &hp.Threads); err != nil {
		return false, errBadHash
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, hp.Time, hp.MemoryKiB, hp.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1 && known, nil
}

package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// benchPassword is every bench user's password.
const benchPassword = "bench-password-1"

// account is a registered user and its tokens.
type account struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Access   string    `json:"access"`
	Refresh  string    `json:"refresh"`
	Expires  time.Time `json:"expires"`
}

// setupFile keeps the users and conversations made on one server, so the
// next run against it skips registration (argon2id makes it slow).
type setupFile struct {
	URL    string              `json:"url"`
	Prefix string              `json:"prefix"`
	Users  []account           `json:"users"`
	Groups map[string][]string `json:"groups"` // "users/group" -> conversation ids
}

// fixture is what a round runs on: U users split into conversations of S.
type fixture struct {
	users     []account
	convs     []string
	members   [][]int // conversation -> user indexes
	userConvs [][]int // user -> conversation indexes
}

// setup makes and keeps the users and conversations of one server. With a
// path it is a file, so the next run against the same server skips
// registration.
type setup struct {
	c    *client
	path string
	sf   setupFile
}

func loadSetup(c *client, path string) (*setup, error) {
	s := &setup{c: c, path: path}
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := json.Unmarshal(data, &s.sf); err != nil {
				return nil, fmt.Errorf("bench: setup file %s: %w", path, err)
			}
			if s.sf.URL != c.base {
				return nil, fmt.Errorf("bench: setup file %s is for %s, not %s", path, s.sf.URL, c.base)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	if s.sf.Prefix == "" {
		b := make([]byte, 4)
		rand.Read(b)
		s.sf = setupFile{URL: c.base, Prefix: "b" + hex.EncodeToString(b), Groups: map[string][]string{}}
	}
	return s, nil
}

func (s *setup) save() error {
	if s.path == "" {
		return nil
	}
	data, err := json.Marshal(&s.sf)
	if err != nil {
		return err
	}
	return os.WriteFile(s.path, data, 0o600)
}

// fixture registers the users and conversations cfg needs (once), and
// refreshes the access tokens that would expire within `need`.
func (s *setup) fixture(ctx context.Context, cfg *Config, need time.Duration, logf func(string, ...any)) (*fixture, error) {
	c, sf := s.c, &s.sf
	if missing := cfg.Users - len(sf.Users); missing > 0 {
		logf("registering %d users on %s (%d at a time)", missing, c.base, cfg.RegisterParallel)
		start := time.Now()
		fresh := make([]account, missing)
		err := parallel(ctx, missing, cfg.RegisterParallel, func(i int) error {
			a, err := c.register(ctx, sf.Prefix+"_"+strconv.Itoa(len(sf.Users)+i), benchPassword)
			fresh[i] = a
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("bench: register: %w", err)
		}
		sf.Users = append(sf.Users, fresh...)
		logf("registered %d users in %s", missing, time.Since(start).Round(time.Millisecond))
	}
	deadline := time.Now().Add(need)
	var refreshed atomic.Bool
	err := parallel(ctx, cfg.Users, 8, func(i int) error {
		if sf.Users[i].Expires.After(deadline) {
			return nil
		}
		a, err := c.refresh(ctx, sf.Users[i])
		if err == nil {
			sf.Users[i] = a
			refreshed.Store(true)
		}
		return err
	})
	// Save even after a failed refresh: rotated tokens must not be lost.
	if refreshed.Load() {
		if serr := s.save(); serr != nil {
			return nil, serr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bench: refresh tokens: %w (remove the setup file to start over)", err)
	}

	f := &fixture{users: sf.Users[:cfg.Users], userConvs: make([][]int, cfg.Users)}
	for g := range cfg.Users / cfg.Group {
		m := make([]int, cfg.Group)
		for j := range m {
			m[j] = g*cfg.Group + j
			f.userConvs[m[j]] = append(f.userConvs[m[j]], g)
		}
		f.members = append(f.members, m)
	}
	key := fmt.Sprintf("%d/%d", cfg.Users, cfg.Group)
	if ids := sf.Groups[key]; len(ids) == len(f.members) {
		f.convs = ids
		return f, nil
	}
	logf("creating %d conversations of %d", len(f.members), cfg.Group)
	start := time.Now()
	f.convs = make([]string, len(f.members))
	err = parallel(ctx, len(f.members), 4, func(g int) error {
		m := f.members[g]
		others := make([]string, 0, len(m)-1)
		for _, u := range m[1:] {
			others = append(others, f.users[u].ID)
		}
		id, err := c.createGroup(ctx, f.users[m[0]], others)
		f.convs[g] = id
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bench: create conversations: %w", err)
	}
	logf("created them in %s", time.Since(start).Round(time.Millisecond))
	sf.Groups[key] = f.convs
	return f, s.save()
}

// parallel runs fn(0..n-1) with at most k at once and returns the first
// error.
func parallel(ctx context.Context, n, k int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, max(k, 1))
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

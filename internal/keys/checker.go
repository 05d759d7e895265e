package keys

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"
)

const (
	// MaxAge is how long a process trusts its copy of the live keys: a
	// revoked key stops working on every process within it.
	MaxAge = 5 * time.Second
	// reloadEvery is how often a copy is refreshed while requests come in,
	// and how often at most an unknown key makes a process look again (a
	// key created on another process a moment ago).
	reloadEvery = time.Second
	// usesEvery is how often the last uses are written.
	usesEvery = 10 * time.Second
)

// ErrUnknown means the key is neither the bootstrap key nor a live key.
var ErrUnknown = errors.New("unknown API key")

// ErrUnavailable means the keys could not be read for longer than MaxAge.
var ErrUnavailable = errors.New("API keys cannot be checked now")

// Bootstrap is the key HINDSIGHT_API_KEY stands for: every scope, not stored.
var Bootstrap = Key{ID: "bootstrap", Name: "HINDSIGHT_API_KEY", Scopes: All}

// Checker tells which key a request's secret is.
type Checker struct {
	store     *Store
	bootstrap []byte
	log       *slog.Logger
	now       func() time.Time

	load sync.Mutex // one read of the keys at a time

	mu         sync.Mutex
	keys       map[[32]byte]Key // the live keys by the hash of their secret
	loadedAt   time.Time        // when keys was read; zero before the first read
	loading    bool             // a background reload runs
	lastLookAt time.Time        // when an unknown key last made us look again
	uses       map[string]int64 // key id → last use (ms), not yet written
	usesAt     time.Time        // when uses were last written
}

// NewChecker checks secrets against the bootstrap key and the keys in store.
func NewChecker(store *Store, bootstrap string, log *slog.Logger) *Checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checker{store: store, bootstrap: []byte(bootstrap), log: log, now: time.Now,
		uses: map[string]int64{}}
}

// Check returns the key whose secret this is: ErrUnknown if none is, and
// ErrUnavailable if the keys could not be read for more than MaxAge.
func (c *Checker) Check(ctx context.Context, secret string) (Key, error) {
	if subtle.ConstantTimeCompare([]byte(secret), c.bootstrap) == 1 {
		return Bootstrap, nil
	}
	h := hashOf(secret)
	now := c.now()
	c.mu.Lock()
	k, ok := c.keys[h]
	seen := c.loadedAt
	age := now.Sub(seen)
	lookAgain := !ok && now.Sub(c.lastLookAt) >= reloadEvery
	if lookAgain {
		c.lastLookAt = now
	}
	if age >= reloadEvery && age < MaxAge && !c.loading {
		c.loading = true
		go c.reloadInBackground()
	}
	c.mu.Unlock()

	if age >= MaxAge || lookAgain {
		if err := c.reloadSince(ctx, seen); err != nil {
			if age >= MaxAge {
				c.log.Error("read API keys", "err", err)
				return Key{}, ErrUnavailable
			}
			c.log.Warn("read API keys", "err", err)
		}
		c.mu.Lock()
		k, ok = c.keys[h]
		c.mu.Unlock()
	}
	if !ok {
		return Key{}, ErrUnknown
	}
	c.mu.Lock()
	c.uses[k.ID] = now.UnixMilli()
	c.mu.Unlock()
	return k, nil
}

func (c *Checker) reloadInBackground() {
	ctx, cancel := context.WithTimeout(context.Background(), MaxAge)
	defer cancel()
	if err := c.Reload(ctx); err != nil {
		c.log.Warn("read API keys", "err", err)
	}
	c.mu.Lock()
	c.loading = false
	c.mu.Unlock()
}

// Reload reads the live keys now, and writes the last uses when they are
// due.
func (c *Checker) Reload(ctx context.Context) error {
	c.load.Lock()
	defer c.load.Unlock()
	return c.reloadLocked(ctx)
}

// reloadSince reads the live keys unless another caller did since seen:
// requests that find the copy stale together cause one read.
func (c *Checker) reloadSince(ctx context.Context, seen time.Time) error {
	c.load.Lock()
	defer c.load.Unlock()
	c.mu.Lock()
	fresh := c.loadedAt.After(seen)
	c.mu.Unlock()
	if fresh {
		return nil
	}
	return c.reloadLocked(ctx)
}

func (c *Checker) reloadLocked(ctx context.Context) error {
	start := c.now()
	ks, err := c.store.read(ctx, "")
	if err != nil {
		return err
	}
	live := make(map[[32]byte]Key, len(ks))
	for _, k := range ks {
		live[k.hash] = k
	}
	c.mu.Lock()
	c.keys, c.loadedAt = live, start
	var uses map[string]int64
	if start.Sub(c.usesAt) >= usesEvery && len(c.uses) > 0 {
		uses, c.uses, c.usesAt = c.uses, map[string]int64{}, start
	}
	c.mu.Unlock()
	if err := c.store.RecordUses(ctx, uses); err != nil {
		c.mu.Lock()
		for id, at := range uses { // keep them for the next try
			c.uses[id] = max(c.uses[id], at)
		}
		c.mu.Unlock()
		return fmt.Errorf("keys read, but: %w", err)
	}
	return nil
}

// pendingUses returns the uses not written yet.
func (c *Checker) pendingUses() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.uses)
}

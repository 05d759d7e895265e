package keys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Scope names what a key may do.
type Scope string

// The scopes, and what each lets a key do.
const (
	StatsRead      Scope = "stats:read"      // stats, delivery stats, event types
	EventsRead     Scope = "events:read"     // the listing and one event's payload
	EndpointsWrite Scope = "endpoints:write" // endpoints, their secrets and tests
	ReplaysWrite   Scope = "replays:write"   // create, cancel and read replays; resend
	KeysAdmin      Scope = "keys:admin"      // create, list and revoke keys
)

// All is every scope, in the order documents list them.
var All = []Scope{StatsRead, EventsRead, EndpointsWrite, ReplaysWrite, KeysAdmin}

// ParseScopes checks a list of scope names: at least one, each known, each
// once.
func ParseScopes(names []string) ([]Scope, error) {
	if len(names) == 0 {
		return nil, errors.New("at least one scope is needed")
	}
	var out []Scope
	for _, n := range names {
		s := Scope(n)
		if !slices.Contains(All, s) {
			return nil, fmt.Errorf("unknown scope %q; scopes are %s", n, Join(All, ", "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// Join lists scopes with sep between them.
func Join(ss []Scope, sep string) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, sep)
}

// MaxNameLen bounds a key's name, in characters.
const MaxNameLen = 100

// ValidateName checks a key's name: 1 to MaxNameLen printable characters.
func ValidateName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > MaxNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("want 1 to %d characters of UTF-8", MaxNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%q is not a printable character", r)
		}
	}
	return nil
}

// Key is a stored key, without its secret.
type Key struct {
	ID        string
	Name      string
	Prefix    string // the secret's first characters, to tell keys apart
	Scopes    []Scope
	CreatedAt time.Time
	LastUsed  time.Time // zero if never used
	hash      [32]byte
}

// Has reports whether k holds scope s.
func (k Key) Has(s Scope) bool { return slices.Contains(k.Scopes, s) }

// Conn is the part of a ClickHouse connection the store needs.
type Conn interface {
	Exec(ctx context.Context, query string, args ...any) error
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

var _ Conn = (driver.Conn)(nil)

// ErrNotFound means no live key has that id.
var ErrNotFound = errors.New("no such key")

// Store reads and writes keys in ClickHouse.
type Store struct {
	conn Conn
	db   string
}

// NewStore keeps keys in database db (already migrated).
func NewStore(conn Conn, db string) *Store { return &Store{conn: conn, db: db} }

func (s *Store) table(name string) string { return "`" + s.db + "`." + name }

const (
	secretPrefix = "hs_"
	prefixLen    = len(secretPrefix) + 6 // what Key.Prefix keeps
)

func hashOf(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// Create stores a new key and returns it with its secret, which nothing
// keeps: the caller shows it once.
func (s *Store) Create(ctx context.Context, name string, scopes []Scope) (Key, string, error) {
	var buf [24 + 8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	secret := secretPrefix + base64.RawURLEncoding.EncodeToString(buf[:24])
	k := Key{ID: "key_" + hex.EncodeToString(buf[24:]), Name: name, Prefix: secret[:prefixLen],
		Scopes: scopes, CreatedAt: time.Now().UTC().Truncate(time.Millisecond), hash: hashOf(secret)}
	if err := s.write(ctx, k, 0); err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	return k, secret, nil
}

// Revoke marks the live key with id revoked.
func (s *Store) Revoke(ctx context.Context, id string) error {
	ks, err := s.read(ctx, id)
	if err != nil {
		return err
	}
	if len(ks) == 0 {
		return fmt.Errorf("key %q: %w", id, ErrNotFound)
	}
	if err := s.write(ctx, ks[0], time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	return nil
}

// List returns the live keys, oldest first, with when each was last used.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	ks, err := s.read(ctx, "")
	if err != nil {
		return nil, err
	}
	rows, err := s.conn.Query(ctx, "SELECT id, max(at) FROM "+s.table("api_key_uses")+" GROUP BY id")
	if err != nil {
		return nil, fmt.Errorf("read key uses: %w", err)
	}
	defer rows.Close()
	used := map[string]int64{}
	for rows.Next() {
		var id string
		var at int64
		if err := rows.Scan(&id, &at); err != nil {
			return nil, fmt.Errorf("read key uses: %w", err)
		}
		used[id] = at
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read key uses: %w", err)
	}
	for i := range ks {
		if at := used[ks[i].ID]; at > 0 {
			ks[i].LastUsed = time.UnixMilli(at).UTC()
		}
	}
	return ks, nil
}

// RecordUses writes when each key id was last used (unix milliseconds).
func (s *Store) RecordUses(ctx context.Context, uses map[string]int64) error {
	if len(uses) == 0 {
		return nil
	}
	ids := make([]string, 0, len(uses))
	ats := make([]int64, 0, len(uses))
	for id, at := range uses {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	if err := s.conn.Exec(ctx, "INSERT INTO "+s.table("api_key_uses")+" (id, at) SELECT id, at FROM (SELECT ? AS ids, ? AS ats) "+
		"ARRAY JOIN ids AS id, ats AS at", ids, ats); err != nil {
		return fmt.Errorf("record key uses: %w", err)
	}
	return nil
}

func (s *Store) write(ctx context.Context, k Key, revokedAt int64) error {
	scopes := make([]string, len(k.Scopes))
	for i, sc := range k.Scopes {
		scopes[i] = string(sc)
	}
	return s.conn.Exec(ctx, "INSERT INTO "+s.table("api_keys")+
		" (id, name, prefix, hash, scopes, created_at, revoked_at, version) SELECT ?, ?, ?, ?, ?, ?, ?, ?",
		k.ID, k.Name, k.Prefix, hex.EncodeToString(k.hash[:]), scopes, k.CreatedAt.UnixMilli(), revokedAt,
		uint64(time.Now().UnixNano()))
}

// read returns the live keys, or the one with id.
func (s *Store) read(ctx context.Context, id string) ([]Key, error) {
	where, args := "", []any{}
	if id != "" {
		where, args = " WHERE id = ?", append(args, id)
	}
	// FINAL picks each id's newest row; the revoked filter runs after it,
	// so an older row can never bring a revoked key back.
	rows, err := s.conn.Query(ctx, "SELECT id, name, prefix, hash, scopes, created_at FROM (SELECT * FROM "+
		s.table("api_keys")+" FINAL"+where+") WHERE revoked_at = 0 ORDER BY created_at, id", args...)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer rows.Close()
	var out []Key
	for rows.Next() {
		var k Key
		var hash string
		var scopes []string
		var created int64
		if err := rows.Scan(&k.ID, &k.Name, &k.Prefix, &hash, &scopes, &created); err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		if b, err := hex.DecodeString(hash); err != nil || len(b) != len(k.hash) {
			return nil, fmt.Errorf("read keys: key %s has a malformed hash", k.ID)
		} else {
			copy(k.hash[:], b)
		}
		for _, sc := range scopes {
			k.Scopes = append(k.Scopes, Scope(sc))
		}
		k.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	return out, nil
}

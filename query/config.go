package query

import (
	"errors"
	"time"

	"github.com/dodev/hindsight/schema"
)

// Config is the API's configuration. The ClickHouse limits and the key
// check are the host's (internal/host).
type Config struct {
	// Database holds the events table. Default schema.DefaultDatabase.
	Database string
	// CursorKey signs the listing's cursors: the API key, so that every
	// API process sharing it accepts the others' cursors. Required.
	CursorKey string
	// Now is the clock default ranges and the event types' last 30 days
	// are read from. Default time.Now; tests over a fixed week fix it.
	Now func() time.Time
}

// ApplyDefaults fills zero fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.Database == "" {
		c.Database = schema.DefaultDatabase
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if err := schema.ValidateDatabase(c.Database); err != nil {
		return err
	}
	if c.CursorKey == "" {
		return errors.New("cursor key: empty")
	}
	return nil
}

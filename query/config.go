package query

import (
	"errors"
	"fmt"
	"time"

	"github.com/dodev/hindsight/internal/httpapi"
	"github.com/dodev/hindsight/schema"
)

// Config is the API's configuration.
type Config struct {
	// Database holds the events table. Default schema.DefaultDatabase.
	Database string
	// APIKey is the bearer key every /v1 request must present. Required.
	APIKey string
	// Limits bound each ClickHouse query (replay's routes share them).
	httpapi.Limits
	// MaxConcurrent bounds the /v1 requests served at once; more are
	// answered 429. Default 16, the API's ClickHouse connections.
	MaxConcurrent int
	// Now is the clock default ranges and the event types' last 30 days
	// are read from. Default time.Now; tests over a fixed week fix it.
	Now func() time.Time
}

// ApplyDefaults fills zero fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.Database == "" {
		c.Database = schema.DefaultDatabase
	}
	c.Limits.ApplyDefaults()
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 16
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
	if c.APIKey == "" {
		return errors.New("api key: empty (set HINDSIGHT_API_KEY)")
	}
	if len(c.APIKey) < 16 {
		return fmt.Errorf("api key: %d characters, want at least 16", len(c.APIKey))
	}
	if c.MaxConcurrent < 1 {
		return fmt.Errorf("max concurrent requests %d: want at least 1", c.MaxConcurrent)
	}
	return c.Limits.Validate()
}

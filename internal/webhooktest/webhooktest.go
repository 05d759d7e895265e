// Package webhooktest is a webhook receiver for tests: it verifies every
// delivery with the Standard Webhooks reference library, independently of
// package replay's signing, and counts deliveries by eventId.
package webhooktest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Receiver answers 204 to a delivery it verifies and 401 to one it cannot.
type Receiver struct {
	URL    string // where it listens, http://127.0.0.1:port
	secret atomic.Pointer[string]
	bad    atomic.Int64
	mu     sync.Mutex
	got    map[string]int
}

// New starts a receiver, stopped when the test ends. Set its secret before
// deliveries arrive.
func New(t testing.TB) *Receiver {
	r := &Receiver{got: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// SetSecret sets the endpoint's signing secret (whsec_...).
func (r *Receiver) SetSecret(s string) { r.secret.Store(&s) }

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	secret := r.secret.Load()
	if secret == nil {
		r.bad.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	wh, err := standardwebhooks.NewWebhook(*secret)
	if err != nil || wh.Verify(body, req.Header) != nil {
		r.bad.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct{ EventID string }
	if json.Unmarshal(body, &ev) != nil || ev.EventID != req.Header.Get("webhook-id") {
		r.bad.Add(1)
	}
	r.mu.Lock()
	r.got[ev.EventID]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Bad is how many deliveries failed verification or carried a body whose
// eventId is not the webhook-id.
func (r *Receiver) Bad() int64 { return r.bad.Load() }

// Counts returns how many verified deliveries each eventId had.
func (r *Receiver) Counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.got))
	for id, n := range r.got {
		out[id] = n
	}
	return out
}

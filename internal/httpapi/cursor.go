package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
)

// Cursors signs the keyset cursors of a listing with a key derived from the
// API key, so a cursor is opaque, every replica of the API accepts the
// others', and a tampered one is refused rather than trusted. Each listing
// has its own purpose, so one listing's cursor means nothing to another.
type Cursors struct{ key []byte }

// NewCursors derives the key of one listing's cursors.
func NewCursors(purpose, apiKey string) Cursors {
	sum := sha256.Sum256([]byte("hindsight cursor v1\x00" + purpose + "\x00" + apiKey))
	return Cursors{key: sum[:]}
}

// Encode signs the position v (JSON-encodable).
func (c Cursors) Encode(v any) string {
	body, _ := json.Marshal(v)
	mac := hmac.New(sha256.New, c.key)
	mac.Write(body)
	return base64.RawURLEncoding.EncodeToString(append(mac.Sum(nil)[:16], body...))
}

// Decode reads a cursor Encode made into v; anything else is a BadParam on
// param.
func (c Cursors) Decode(param, s string, v any) error {
	bad := &BadParam{param, "not a cursor this API issued"}
	// Strict decoding still skips \r and \n, so a cursor is also refused
	// unless it is exactly the encoding of what it decodes to.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) < 17 || len(raw) > 1024 || base64.RawURLEncoding.EncodeToString(raw) != s {
		return bad
	}
	sig, body := raw[:16], raw[16:]
	mac := hmac.New(sha256.New, c.key)
	mac.Write(body)
	if !hmac.Equal(sig, mac.Sum(nil)[:16]) {
		return bad
	}
	if err := json.Unmarshal(body, v); err != nil {
		return bad
	}
	return nil
}

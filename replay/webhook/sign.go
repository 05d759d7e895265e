package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// secretPrefix marks a Standard Webhooks signing secret.
const secretPrefix = "whsec_"

// NewSecret returns a signing secret: "whsec_" and the base64 of 32 random
// bytes (the spec allows 24 to 64).
func NewSecret() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// CheckSecret reports why secret cannot sign, if it cannot.
func CheckSecret(secret string) error {
	_, err := secretKey(secret)
	return err
}

func secretKey(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, errors.New("secret does not start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("secret is not base64: %w", err)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("secret has %d bytes, want 24 to 64", len(key))
	}
	return key, nil
}

// Sign returns the webhook-signature header for one delivery: a "v1,<base64
// HMAC-SHA256 of id.timestamp.body>" for each secret, space-separated, so a
// receiver holding either the old or the new secret during a rotation can
// verify it.
func Sign(id string, ts time.Time, body []byte, secrets ...string) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("no secret to sign with")
	}
	signed := make([]byte, 0, len(id)+24)
	signed = strconv.AppendInt(append(append(signed, id...), '.'), ts.Unix(), 10)
	signed = append(signed, '.')
	sig := make([]byte, 0, len(secrets)*48)
	for i, s := range secrets {
		k, err := keyedFor(s)
		if err != nil {
			return "", err
		}
		k.mac.Write(signed)
		k.mac.Write(body)
		var sum [sha256.Size]byte
		if i > 0 {
			sig = append(sig, ' ')
		}
		sig = base64.StdEncoding.AppendEncode(append(sig, "v1,"...), k.mac.Sum(sum[:0]))
		keyedMACs.Put(k)
	}
	return string(sig), nil
}

// keyed is an HMAC-SHA256 keyed with one secret. Keying one decodes the
// secret and hashes two blocks, about half the cost of signing a small
// event, so Sign takes keyed ones from keyedMACs and resets them.
type keyed struct {
	secret string
	mac    hash.Hash
}

var keyedMACs sync.Pool // of *keyed

// keyedFor returns an HMAC keyed with secret, reset.
func keyedFor(secret string) (*keyed, error) {
	if k, _ := keyedMACs.Get().(*keyed); k != nil && k.secret == secret {
		k.mac.Reset()
		return k, nil
	}
	key, err := secretKey(secret)
	if err != nil {
		return nil, err
	}
	return &keyed{secret: secret, mac: hmac.New(sha256.New, key)}, nil
}

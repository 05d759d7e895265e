package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func headers(id string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", sig)
	return h
}

// TestSignVerifiedByReferenceLibrary checks our signatures with the
// Standard Webhooks reference Go library, including both secrets of a
// rotation.
func TestSignVerifiedByReferenceLibrary(t *testing.T) {
	oldSecret, err := NewSecret()
	require.NoError(t, err)
	newSecret, err := NewSecret()
	require.NoError(t, err)
	body := []byte(`{"eventId":"evt_1","type":"send.email.sent","data":{"to":"a@b.c"},"createdAt":1}`)
	now := time.Now()

	sig, err := Sign("evt_1", now, body, newSecret, oldSecret)
	require.NoError(t, err)
	assert.Len(t, strings.Fields(sig), 2)
	for _, s := range []string{oldSecret, newSecret} {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(t, err)
		assert.NoError(t, wh.Verify(body, headers("evt_1", now, sig)), "verifies with either secret")
		assert.Error(t, wh.Verify(append(body, ' '), headers("evt_1", now, sig)), "a changed body fails")
		assert.Error(t, wh.Verify(body, headers("evt_2", now, sig)), "a changed id fails")
	}
	other, _ := NewSecret()
	wh, _ := standardwebhooks.NewWebhook(other)
	assert.Error(t, wh.Verify(body, headers("evt_1", now, sig)), "another secret fails")
}

// TestSignVector is the Standard Webhooks spec's published example.
func TestSignVector(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ts := time.Unix(1614265330, 0)
	sig, err := Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, []byte(`{"test": 2432232314}`), secret)
	require.NoError(t, err)
	assert.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)
}

// TestSignReusesNoKeyAcrossSecrets signs with secrets in turn, so the
// keyed HMACs Sign reuses meet other secrets: every signature must still
// be the spec's, or the one a fresh HMAC gives.
func TestSignReusesNoKeyAcrossSecrets(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ts := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	other, err := NewSecret()
	require.NoError(t, err)
	key, err := secretKey(other)
	require.NoError(t, err)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330." + string(body)))
	otherSig := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for range 20 {
		sig, err := Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body, secret)
		require.NoError(t, err)
		require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)
		sig, err = Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body, other, secret)
		require.NoError(t, err)
		require.Equal(t, otherSig+" v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)
	}
}

// BenchmarkSign signs a 220-byte event with one secret, as each delivery
// attempt does.
func BenchmarkSign(b *testing.B) {
	secret, err := NewSecret()
	require.NoError(b, err)
	body := []byte(strings.Repeat("x", 220))
	ts := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign("evt_0123456789abcdef", ts, body, secret); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSecrets(t *testing.T) {
	s, err := NewSecret()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(s, "whsec_"))
	key, err := secretKey(s)
	require.NoError(t, err)
	assert.Len(t, key, 32)
	for _, bad := range []string{"", "whsec_", "whsec_!!!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + strings.Repeat("A", 200)} {
		_, err := Sign("id", time.Now(), nil, bad)
		assert.Error(t, err, bad)
	}
}
